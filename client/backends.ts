import * as tf from '@tensorflow/tfjs';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';
import { BACKENDS, type Backend } from '../shared/protocol/messages.js';

/**
 * Picks the TF.js backend tensor work runs on (client/README.md). `auto` tries, fastest first:
 * webgpu → tfjs-node-gpu → tfjs-node → wasm → cpu. The GPU and native backends are optional packages the user may
 * install; they are imported dynamically by a computed name, so neither tsc nor a fresh `npm install` needs them.
 * Backend state is per thread: each piscina worker thread calls this for its own TF.js instance.
 */

/** The wire protocol's backend names, in `auto`'s order (fastest first). */
export { BACKENDS };
export type BackendName = Backend;
export type BackendRequest = 'auto' | BackendName;

export interface BackendAttempt {
  backend: BackendName;
  error: string;
}

export interface BackendChoice {
  backend: BackendName;
  /** What it runs on, e.g. the GPU adapter or the CPU model, where that can be told. */
  device?: string;
  /** Backends tried before this one, with why each failed (only `auto` tries more than one). */
  tried: BackendAttempt[];
}

// Off: TF.js's "install our node backend" banner (and other console noise) on every worker thread. PROD only
// silences TF.js's own warn/log; it changes no numerics.
tf.env().set('PROD', true);

/** Imports an optional package by a name tsc does not resolve. */
async function importOptional(name: string): Promise<unknown> {
  try {
    return (await import(name)) as unknown;
  } catch (err) {
    const code = (err as { code?: unknown } | null)?.code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new Error(`npm package ${name} is not installed`);
    }
    throw err;
  }
}

async function activate(name: string): Promise<void> {
  let ok: boolean;
  try {
    ok = await tf.setBackend(name);
  } catch (err) {
    throw new Error(`TF.js could not initialise it (${oneLine(err)})`);
  }
  if (!ok || tf.getBackend() !== name) throw new Error('TF.js could not initialise it');
  await tf.ready();
}

function oneLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').trim();
}

function cpuDevice(): string {
  const list = cpus();
  const model = list[0]?.model.trim() ?? 'CPU';
  return `${model} (${list.length} cores)`;
}

interface GpuAdapterInfo {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
}
interface GpuAdapterLike {
  info?: GpuAdapterInfo;
  requestAdapterInfo?: () => Promise<GpuAdapterInfo>;
}
interface GpuLike {
  requestAdapter(): Promise<GpuAdapterLike | null>;
}
interface WebGpuPackage {
  create(flags: string[]): GpuLike;
  globals: Record<string, unknown>;
}

/** Directories the Linux dynamic loader searches (LD_LIBRARY_PATH, ld.so.conf.d, the usual system ones). */
function libraryDirs(): string[] {
  const dirs = (process.env.LD_LIBRARY_PATH ?? '').split(':').filter((d) => d !== '');
  try {
    for (const f of readdirSync('/etc/ld.so.conf.d')) {
      if (!f.endsWith('.conf')) continue;
      for (const line of readFileSync(path.join('/etc/ld.so.conf.d', f), 'utf8').split('\n')) {
        const d = line.trim();
        if (d.startsWith('/')) dirs.push(d);
      }
    }
  } catch {
    // no ld.so.conf.d: the defaults below
  }
  return [...dirs, '/usr/local/lib', '/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/lib/x86_64-linux-gnu', '/lib/aarch64-linux-gnu', '/usr/lib64', '/lib64', '/usr/lib', '/lib'];
}

/**
 * `auto` skips webgpu up front on Linux without a Vulkan loader: Dawn would only find no adapter, after printing
 * multi-line native warnings to stderr in every thread. An explicit `--backend webgpu` always tries.
 */
function missingVulkanLoader(): boolean {
  return process.platform === 'linux' && !libraryDirs().some((d) => existsSync(path.join(d, 'libvulkan.so.1')));
}

interface GpuAdapterInfoFlags extends GpuAdapterInfo {
  isFallbackAdapter?: boolean;
}

async function webgpu(auto: boolean): Promise<string | undefined> {
  if (auto && missingVulkanLoader()) {
    throw new Error('no Vulkan loader (libvulkan.so.1) found; WebGPU needs libvulkan1 and the GPU driver\'s Vulkan ICD');
  }
  const pkg = (await importOptional('webgpu')) as Partial<WebGpuPackage> & { default?: Partial<WebGpuPackage> };
  const dawn = typeof pkg.create === 'function' ? pkg : pkg.default;
  if (dawn === undefined || typeof dawn.create !== 'function' || dawn.globals === undefined) {
    throw new Error('npm package webgpu does not export create() and globals');
  }
  // Node has no WebGPU of its own: Dawn's bindings supply the globals and navigator.gpu that the TF.js backend uses.
  Object.assign(globalThis, dawn.globals);
  const gpu = dawn.create([]);
  const existing = (globalThis as { navigator?: object }).navigator;
  Object.defineProperty(globalThis, 'navigator', { value: { ...existing, gpu }, configurable: true, writable: true });
  const adapter = await gpu.requestAdapter();
  if (adapter === null) {
    throw new Error('no WebGPU adapter (needs the Vulkan loader, libvulkan1, and the GPU driver\'s Vulkan ICD)');
  }
  const info: GpuAdapterInfoFlags = adapter.info ?? (await adapter.requestAdapterInfo?.()) ?? {};
  const software = info.isFallbackAdapter === true || /llvmpipe|lavapipe|swiftshader/i.test(`${info.device ?? ''} ${info.description ?? ''}`);
  if (auto && software) {
    // A CPU-emulated GPU is slower than wasm: `auto` moves on; an explicit request still gets it.
    throw new Error(`only a software WebGPU adapter (${info.description ?? info.device ?? 'fallback'})`);
  }
  await importOptional('@tensorflow/tfjs-backend-webgpu');
  await activate('webgpu');
  const parts = [info.vendor, info.architecture, info.device, info.description].filter((s): s is string => typeof s === 'string' && s !== '');
  return parts.length > 0 ? parts.join(' ') : undefined;
}

async function native(pkg: 'tfjs-node' | 'tfjs-node-gpu'): Promise<string | undefined> {
  await importOptional(`@tensorflow/${pkg}`);
  // Both packages register TF.js's native backend as 'tensorflow' (in the engine TF.js keeps on globalThis, so
  // this copy of TF.js sees it even when the package brought its own).
  if (tf.findBackendFactory('tensorflow') === null) throw new Error(`@tensorflow/${pkg} loaded but registered no 'tensorflow' backend`);
  await activate('tensorflow');
  return pkg === 'tfjs-node-gpu' ? 'CUDA (libtensorflow)' : cpuDevice();
}

async function wasm(): Promise<string> {
  await import('@tensorflow/tfjs-backend-wasm');
  await activate('wasm');
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  return `${cpuDevice()}, wasm${simd === true ? ' SIMD' : ''}`;
}

async function tryBackend(name: BackendName, auto: boolean): Promise<string | undefined> {
  switch (name) {
    case 'webgpu':
      return webgpu(auto);
    case 'tfjs-node-gpu':
    case 'tfjs-node':
      return native(name);
    case 'wasm':
      return wasm();
    case 'cpu':
      await activate('cpu');
      return cpuDevice();
  }
}

/** The TF.js name a fedpool backend registers under. */
export function tfBackendName(name: BackendName): string {
  return name === 'tfjs-node' || name === 'tfjs-node-gpu' ? 'tensorflow' : name;
}

/**
 * Makes `requested` the active TF.js backend. `auto` returns the first that works and lists the ones that failed;
 * an explicit backend that fails throws `backend <name> is not available: <why>`.
 */
export async function selectBackend(requested: BackendRequest): Promise<BackendChoice> {
  const order: readonly BackendName[] = requested === 'auto' ? BACKENDS : [requested];
  if (requested !== 'auto' && !BACKENDS.includes(requested)) {
    throw new Error(`unknown backend ${JSON.stringify(requested)} (expected auto, ${BACKENDS.join(', ')})`);
  }
  const tried: BackendAttempt[] = [];
  for (const backend of order) {
    try {
      const device = await tryBackend(backend, requested === 'auto');
      return device === undefined ? { backend, tried } : { backend, device, tried };
    } catch (err) {
      if (requested !== 'auto') throw new Error(`backend ${backend} is not available: ${oneLine(err)}`);
      tried.push({ backend, error: oneLine(err) });
    }
  }
  throw new Error(`no TF.js backend is available (${tried.map((t) => `${t.backend}: ${t.error}`).join('; ')})`);
}
