import type { TestProject } from 'vitest/node';
import { startPgServer } from './pg-server.ts';

/**
 * Vitest global setup: a throwaway PostgreSQL server (./pg-server.ts) for the
 * tests that run Warden on PostgreSQL (test/support/postgres.ts hands each
 * test its own schema on it), stopped and removed at the end. Fails loudly
 * when no PostgreSQL is installed: those tests are part of the suite, not skipped.
 */

declare module 'vitest' {
  export interface ProvidedContext {
    pgUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startPgServer();
  project.provide('pgUrl', server.url);
  return () => server.stop();
}
