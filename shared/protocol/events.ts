// No socket.io import at all (not even types): shared/ must load in a browser worker too.
import { decodeMessage, encodeMessage, type DecodeOptions, type EncodeOptions } from './codec.js';
import { ProtocolError, isProtocolError } from './errors.js';
import type { CoordinatorMessageType, Message, MessageOf, MessageType, WorkerMessageType } from './messages.js';

/**
 * socket.io event names: one per message type, each carrying one encoded frame. The `error`
 * message travels as `peer-error`, because socket.io overloads `error` on server sockets: it
 * also emits it itself, with an Error, for invalid packets and middleware rejections
 * (Socket#_onerror), so a listener could not tell a peer's report from a local failure.
 */
export const EVENT_NAMES = {
  hello: 'hello',
  welcome: 'welcome',
  heartbeat: 'heartbeat',
  pull: 'pull',
  lease: 'lease',
  weights: 'weights',
  result: 'result',
  failure: 'failure',
  release: 'release',
  'blob-request': 'blob-request',
  blob: 'blob',
  'job-control': 'job-control',
  error: 'peer-error',
} as const satisfies { readonly [T in MessageType]: string };

export type EventNameOf<T extends MessageType> = (typeof EVENT_NAMES)[T];

const TYPE_BY_EVENT: ReadonlyMap<string, MessageType> = new Map(
  (Object.keys(EVENT_NAMES) as MessageType[]).map((type) => [EVENT_NAMES[type], type]),
);

/** The message type an event name carries, if it is one of ours. */
export function messageTypeOfEvent(event: string): MessageType | undefined {
  return TYPE_BY_EVENT.get(event);
}

/**
 * An encoded frame. Node receivers get a Buffer (a Uint8Array); browser socket.io clients get
 * an ArrayBuffer, which onMessage/decodeMessage also accept.
 */
export type Frame = Uint8Array;
/** socket.io acknowledgement carrying the reply frame. */
export type FrameAck = (reply: Frame) => void;

// heartbeat's ack is optional: when asked for it is a barrier — socket.io handles one socket's events in order, so
// the reply means everything sent before it was processed (a draining worker waits for it before disconnecting,
// or its last results could be dropped).
type Listener<T extends MessageType> = T extends 'heartbeat'
  ? (frame: Frame, ack?: FrameAck) => void
  : T extends 'hello'
    ? (frame: Frame, ack: FrameAck) => void // the coordinator answers with welcome (or error)
  : (frame: Frame) => void;

/** Events a worker emits: `Server<WorkerToCoordinatorEvents, CoordinatorToWorkerEvents>`. */
export type WorkerToCoordinatorEvents = { [T in WorkerMessageType as EventNameOf<T>]: Listener<T> };
/** Events a coordinator emits: `Socket<CoordinatorToWorkerEvents, WorkerToCoordinatorEvents>` (client). */
export type CoordinatorToWorkerEvents = { [T in CoordinatorMessageType as EventNameOf<T>]: Listener<T> };

/** The part of a socket (socket.io server or client, or a test double) the helpers need. */
export interface MessageEmitter {
  emit(event: string, ...args: unknown[]): unknown;
}
export interface MessageReceiver {
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  // `off` is used when present; it is not declared because socket.io-client's typed `off`
  // signature is not assignable to a plain string-keyed one.
}

/**
 * Validates, encodes and emits `message` under its event name; throws ProtocolError (and sends
 * nothing) if it is invalid or larger than `options.maxBytes`. Returns the frame size in bytes.
 */
export function sendMessage(socket: MessageEmitter, message: Message, options: EncodeOptions = {}): number {
  const frame = encodeMessage(message, options);
  socket.emit(EVENT_NAMES[message.type], frame);
  return frame.byteLength;
}

/**
 * Emits a frame that encodeMessage made earlier for a message of `type`: a coordinator encodes a blob's chunks once
 * and sends the same frames to every worker that asks.
 */
export function sendEncoded(socket: MessageEmitter, type: MessageType, frame: Uint8Array): void {
  socket.emit(EVENT_NAMES[type], frame);
}

/** Sends a reply through the peer's ack callback (validated and encoded like sendMessage). */
export type Reply = (message: Message) => void;
export type MessageHandler<T extends MessageType> = (message: MessageOf<T>, reply: Reply | undefined) => void | PromiseLike<void>;

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : typeof e;
}

/**
 * Listens for `type`: decodes each frame and calls `handler`, or calls `onError` with a
 * ProtocolError — for a bad frame, a frame whose type differs from the event, or a handler that
 * throws / rejects (code 'handler', unless it threw a ProtocolError such as from assertTensor).
 * `reply` is set when the peer asked for an ack (hello). The listener never throws into socket.io.
 * Returns a function that removes the listener (when the socket has `off`).
 */
export function onMessage<T extends MessageType>(
  socket: MessageReceiver,
  type: T,
  handler: MessageHandler<T>,
  onError: (error: ProtocolError) => void,
  options: DecodeOptions = {},
): () => void {
  const event = EVENT_NAMES[type];
  const fail = (e: unknown): void => {
    const error = isProtocolError(e) ? e : new ProtocolError('handler', `handler for "${type}" failed: ${errorText(e)}`, { cause: e });
    try {
      onError(error);
    } catch (inner) {
      // Throwing here would escape into socket.io's dispatch and crash the process.
      console.error(`fedpool protocol: onError for "${type}" threw: ${errorText(inner)} (while reporting: ${error.message})`);
    }
  };
  const listener = (...args: unknown[]): void => {
    try {
      const message = decodeMessage(args[0], options);
      if (message.type !== type) {
        throw new ProtocolError('malformed', `event "${event}" carried a "${message.type}" message`, { path: 'type' });
      }
      const ack = args[1];
      const reply: Reply | undefined =
        typeof ack === 'function' ? (m: Message): void => void Reflect.apply(ack, undefined, [encodeMessage(m)]) : undefined;
      const pending = handler(message as MessageOf<T>, reply);
      if (pending !== undefined && typeof pending.then === 'function') pending.then(undefined, fail);
    } catch (e) {
      fail(e);
    }
  };
  socket.on(event, listener);
  return () => {
    const off: unknown = Reflect.get(socket, 'off');
    if (typeof off === 'function') Reflect.apply(off, socket, [event, listener]);
  };
}
