// Caps on the TCP connections the coordinator's server holds (docs/security.md, "Memory and the event loop"): per
// remote address and in total, counted on the server's 'connection' event, so they cover worker websockets and HTTP
// requests alike, before a byte is read. A connection past a cap is destroyed at once and counted.
import type { Server, Socket } from 'node:net';

/** Connections from one address (an IPv4 address, or one IPv6 /64) at once. */
export const DEFAULT_MAX_CONNECTIONS_PER_IP = 1_024;
/** Connections at once, from everywhere. */
export const DEFAULT_MAX_CONNECTIONS = 10_000;

export interface ConnectionCaps {
  maxConnections: number;
  maxConnectionsPerIp: number;
}

export type RefusalReason = 'per-ip' | 'total';

/**
 * The address a connection counts under: IPv4 as is (also when mapped into IPv6), IPv6 by its /64, since one host
 * commonly holds a whole /64 and could otherwise open the per-address cap once per address.
 */
export function addressKey(address: string | undefined): string {
  if (address === undefined || address === '') return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped !== null) return mapped[1] as string;
  if (!address.includes(':')) return address;
  const bare = address.split('%')[0] as string;
  const [head = '', tail] = bare.split('::');
  const groups = (s: string): string[] => (s === '' ? [] : s.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g])));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const full = [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${full.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`;
}

export class ConnectionLimiter {
  private total = 0;
  private readonly byAddress = new Map<string, number>();

  constructor(
    private readonly server: Server,
    private readonly caps: ConnectionCaps,
    private readonly observe: { refused?: (reason: RefusalReason, address: string) => void; open?: (connections: number) => void } = {},
  ) {
    server.on('connection', this.onConnection);
  }

  /** Connections held now. */
  get open(): number {
    return this.total;
  }

  /** Connections held now from `address`'s key. */
  openFrom(address: string): number {
    return this.byAddress.get(addressKey(address)) ?? 0;
  }

  private readonly onConnection = (socket: Socket): void => {
    const key = addressKey(socket.remoteAddress);
    const fromKey = this.byAddress.get(key) ?? 0;
    const reason: RefusalReason | undefined = this.total >= this.caps.maxConnections ? 'total' : fromKey >= this.caps.maxConnectionsPerIp ? 'per-ip' : undefined;
    if (reason !== undefined) {
      socket.destroy();
      this.observe.refused?.(reason, key);
      return;
    }
    this.total++;
    this.byAddress.set(key, fromKey + 1);
    this.observe.open?.(this.total);
    socket.once('close', () => {
      this.total--;
      const left = (this.byAddress.get(key) ?? 1) - 1;
      if (left <= 0) this.byAddress.delete(key);
      else this.byAddress.set(key, left);
      this.observe.open?.(this.total);
    });
  };

  detach(): void {
    this.server.off('connection', this.onConnection);
  }
}
