import type { Command } from 'commander';
import { generateCheckpointKeyPair } from '../../audit/index.ts';
import { auditCommand } from './audit-shared.ts';

/** `warden audit keygen`: a fresh Ed25519 pair for signing checkpoints. Prints the private key: run it somewhere private. */
export function registerAuditKeygen(program: Command): void {
  auditCommand(program)
    .command('keygen')
    .description('Generate an Ed25519 key pair for signing audit checkpoints')
    .action(() => {
      const k = generateCheckpointKeyPair();
      process.stdout.write(
        [
          '# Private key: keep secret; give it to Warden as WARDEN_CHECKPOINT_KEY (PEM, or the one-line base64 below).',
          k.privateKeyPem.trimEnd(),
          `WARDEN_CHECKPOINT_KEY=${k.privateKeyBase64}`,
          '',
          '# Public key: publish it to whoever verifies checkpoints (warden audit verify --public-key).',
          k.publicKeyPem.trimEnd(),
          `public key (base64 SPKI, as stored in checkpoints): ${k.publicKeyBase64}`,
          '',
        ].join('\n'),
      );
    });
}
