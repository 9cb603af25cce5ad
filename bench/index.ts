import { readdirSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * `npm run bench`: imports every bench module in this folder (each exports
 * `run(): Promise<void>` and prints its own figures) and runs them one after
 * another, so numbers are not skewed by each other. Name modules on the
 * command line to run only those: `npx tsx bench/index.ts audit gateway`.
 */
interface BenchModule {
  run?: () => Promise<void>;
}

const dir = fileURLToPath(new URL('.', import.meta.url));
const only = process.argv.slice(2);
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.ts') && f !== 'index.ts' && !f.endsWith('.d.ts'))
  .filter((f) => only.length === 0 || only.includes(f.replace(/\.ts$/, '')))
  .sort();

let failed = 0;
for (const file of files) {
  const mod = (await import(pathToFileURL(`${dir}${file}`).href)) as BenchModule;
  if (typeof mod.run !== 'function') {
    process.stderr.write(`bench: ${file} exports no run(); skipped\n`);
    continue;
  }
  process.stdout.write(`== ${file}\n`);
  try {
    await mod.run();
  } catch (err) {
    failed++;
    process.stderr.write(`bench: ${file} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  }
}
process.exitCode = failed > 0 ? 1 : 0;
