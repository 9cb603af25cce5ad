import { useStore } from '../support/store-under-test.ts';

useStore('postgres');
await import('../audit-call-records.test.ts');
