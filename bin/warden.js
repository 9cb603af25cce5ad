#!/usr/bin/env node
// Launcher for a checkout: registers tsx in this very process and runs the
// TypeScript CLI, so there is one process and signals (SIGINT, SIGTERM,
// SIGHUP to reload the policy) reach Warden itself.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/index.ts');
process.exitCode = await main(process.argv);
