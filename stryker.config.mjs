// Mutation testing over the security core: `npm run mutate` (see README, "Mutation testing").
// Not part of `npm test` or CI: too slow for two cores.
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  packageManager: 'npm',
  testRunner: 'vitest',
  vitest: { configFile: 'stryker.vitest.config.ts', related: true },
  checkers: ['typescript'],
  tsconfigFile: 'tsconfig.json',
  typescriptChecker: { prioritizePerformanceOverAccuracy: true },
  coverageAnalysis: 'perTest',
  mutate: [
    'src/policy/**/*.ts',
    'src/audit/**/*.ts',
    'src/approvals/**/*.ts',
    'src/gateway/tokens.ts',
    'src/gateway/arguments.ts',
    'src/gateway/pipeline.ts',
    'src/gateway/call.ts',
    'src/gateway/call-outcomes.ts',
    'src/gateway/pins.ts',
    'src/slack/replay-guard.ts',
    'src/control/kill-switch.ts',
  ],
  // A second run re-tests only mutants whose code or tests changed.
  incremental: true,
  incrementalFile: 'reports/stryker-incremental.json',
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  clearTextReporter: { allowColor: false, logTests: false, reportScoreTable: true, reportMutants: true },
  // Two shared cores: one test process at a time.
  concurrency: 1,
  timeoutMS: 60_000,
  tempDirName: '.stryker-tmp',
  ignorePatterns: ['reports', 'data', 'coverage', 'dist', '.stryker-tmp'],
  thresholds: { high: 90, low: 80, break: null },
};
