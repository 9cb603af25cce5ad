import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Real child processes and SQLite files: give slow shared machines room.
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // Vitest's default is one worker per core but one; on the 2-core CI machines that is one file at a
    // time (482 s). Most files wait on child processes, sockets and fsync rather than the CPU, so three
    // at once finish in about 340 s there, every file passing.
    maxWorkers: 3,
    globalSetup: ['test/support/global-build.ts', 'test/support/global-postgres.ts'],
  },
});
