// The model bundle without TF.js: manifest, featurizer, bundle packing and validation, embedding input. TF.js model building,
// loading and scoring live in ./tf-model.ts, imported on its own so light users (the coordinator, the CLI's
// input checks) never load TF.js.
export * from './errors.js';
export * from './manifest.js';
export * from './featurizer.js';
export * from './bundle.js';
export * from './embedding-input.js';
