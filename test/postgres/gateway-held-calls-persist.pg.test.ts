// The same behaviour tests as test/gateway-held-calls-persist.test.ts, on PostgreSQL:
// every `warden serve` process and CLI of a test shares one PostgreSQL schema.
import { useStore } from '../support/store-under-test.ts';

useStore('postgres');
await import('../gateway-held-calls-persist.test.ts');
