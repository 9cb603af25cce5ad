// The same behaviour tests as test/gateway-tokens.test.ts, on PostgreSQL.
import { useStore } from '../support/store-under-test.ts';

useStore('postgres');
await import('../gateway-tokens.test.ts');
