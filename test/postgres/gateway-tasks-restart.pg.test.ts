import { useStore } from '../support/store-under-test.ts';

useStore('postgres');
await import('../gateway-tasks-restart.test.ts');
