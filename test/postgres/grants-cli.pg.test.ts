// The same behaviour tests as test/grants-cli.test.ts, on PostgreSQL.
import { useStore } from '../support/store-under-test.ts';

useStore('postgres');
await import('../grants-cli.test.ts');
