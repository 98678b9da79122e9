/** A user error: main() prints its message as one line on stderr and exits with `exitCode` (default 1). */
export class UserError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = 'UserError';
    this.exitCode = exitCode;
  }
}

/** A command that is declared but not implemented yet: exit 2. */
export function notBuilt(command: string, issue: number): never {
  throw new UserError(`fedpool ${command}: not built yet (issue #${issue})`, 2);
}
