import { defineConfig } from 'vitest/config';
import base from './vitest.config.ts';

/*
 * The suite as Stryker runs it: the project's own config, with the test files
 * optionally narrowed by WARDEN_MUTATE_TESTS (comma-separated globs), so a
 * run over one small file need not start every integration test on a shared
 * two-core machine. Unset, every test file is a candidate (Stryker then keeps
 * those related to the mutated files, and per mutant only those covering it).
 */
const only = process.env.WARDEN_MUTATE_TESTS?.split(',')
  .map((s) => s.trim())
  .filter(Boolean);

export default defineConfig({
  ...base,
  test: { ...base.test, ...(only?.length ? { include: only } : {}) },
});
