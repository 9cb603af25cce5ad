import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Logs go to stderr: in stdio mode stdout carries JSON-RPC alone.
 * Redaction is a second net; the first is never passing secrets to a log call.
 */
export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  return pino(
    {
      name: options.name ?? 'warden',
      level: options.level ?? process.env.LOG_LEVEL ?? 'info',
      redact: {
        paths: [
          '*.token',
          '*.password',
          '*.secret',
          '*.authorization',
          '*.headers.authorization',
          'token',
          'secret',
          'authorization',
        ],
        censor: '[redacted]',
      },
    },
    pino.destination({ fd: 2, sync: false }),
  );
}

/** A logger that writes nothing, for tests and benchmarks that do not read logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
