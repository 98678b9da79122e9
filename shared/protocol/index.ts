// Public surface of the wire protocol (`fedpool/protocol`). errors.ts's text helpers stay internal.
export { PROTOCOL_ERROR_CODES, ProtocolError, isProtocolError } from './errors.js';
export type { ProtocolErrorCode, ProtocolErrorOptions } from './errors.js';
export * from './tensor.js';
export * from './messages.js';
export * from './codec.js';
export * from './events.js';
