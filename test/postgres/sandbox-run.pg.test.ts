import { useStore } from '../support/store-under-test.ts';

useStore('postgres');
await import('../sandbox-run.test.ts');
