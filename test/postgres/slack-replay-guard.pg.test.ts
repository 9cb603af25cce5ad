// The same behaviour tests as test/slack-replay-guard.test.ts, on PostgreSQL.
import { useStore } from '../support/store-under-test.ts';

useStore('postgres');
await import('../slack-replay-guard.test.ts');
