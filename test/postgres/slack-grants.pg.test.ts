// The same behaviour tests as test/slack-grants.test.ts, on PostgreSQL.
import { useStore } from '../support/store-under-test.ts';

useStore('postgres');
await import('../slack-grants.test.ts');
