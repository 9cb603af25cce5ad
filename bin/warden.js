#!/usr/bin/env node
// Runs the compiled CLI (dist/, built by `npm install` through the prepare script, and
// by `npm start`). One process, so signals (SIGINT, SIGTERM, SIGHUP to reload the
// policy) reach Warden itself. TypeScript through tsx is for tests and development only:
// it cost 1-5 s at every start.
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/index.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('warden: the compiled CLI is missing (dist/); run `npm run build` in the Warden checkout\n');
  process.exit(3);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv);
