import { useStore } from '../support/store-under-test.ts';

useStore('postgres');
await import('../slack-replay-restart.test.ts');
