import { useStore } from '../support/store-under-test.ts';

useStore('postgres');
await import('../control-drill.test.ts');
