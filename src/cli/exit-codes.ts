/**
 * The CLI's exit codes, in a module of their own so commands can set them
 * without importing the program that registers them (an import loop).
 * 0 ok, 1 a check failed (e.g. audit chain broken, a decision refused), 2 bad input, 3 anything else.
 */
export const ExitCode = { OK: 0, CHECK_FAILED: 1, BAD_INPUT: 2, FAILURE: 3 } as const;

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];
