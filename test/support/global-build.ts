import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * Vitest global setup: compiles src/ to dist/ (incremental, ~2 s when little changed), so the
 * tests that run `bin/warden.js` as `npm start` does exercise the code under test, not a stale build.
 */
export default function setup(): void {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  try {
    execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], {
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
      stdio: 'inherit',
    });
  } catch {
    // tsc still emits on type errors; those fail `npm test` in its own type-check step, and
    // work in progress should still be testable file by file.
  }
}
