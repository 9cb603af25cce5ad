import type { Command } from 'commander';

/**
 * A `warden <name>` group that several modules hang verbs off: whoever
 * registers first creates it (with its description), the rest find it.
 */
export function commandGroup(program: Command, name: string, description: string): Command {
  return program.commands.find((c) => c.name() === name) ?? program.command(name).description(description);
}

/** A plain-text table: columns padded to their widest cell, two spaces apart, a newline at the end. */
export function formatColumns(head: readonly string[], body: readonly (readonly string[])[]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  return `${[head, ...body]
    .map((cols) =>
      cols
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}
