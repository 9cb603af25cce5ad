import { useStore } from '../support/store-under-test.ts';

// The same /healthz tests, on a PostgreSQL store.
useStore('postgres');
await import('../gateway-healthz.test.ts');
