// The part of the WebAssembly JavaScript API the kernels use. It is a global in Node.js and in browsers, but
// TypeScript declares it only in the DOM and web-worker libraries, which this platform-free code does not load.
declare namespace WebAssembly {
  class Module {
    constructor(bytes: Uint8Array);
  }
  class Instance {
    constructor(module: Module, imports: Record<string, never>);
    readonly exports: Record<string, unknown>;
  }
  class Memory {
    readonly buffer: ArrayBuffer;
    grow(pages: number): number;
  }
}
