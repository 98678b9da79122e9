// fedpool's library entry: the aggregation rules and the server-side pipeline, platform-free.
// The wire protocol is exported separately as 'fedpool/protocol'.
export * from './aggregation/index.js';
export { aggregationConfigSchema, parseAggregationConfig, type AggregationConfig } from './config/aggregation.js';
export { parseTrainConfig, ConfigError, type TrainConfig } from './config/train.js';
export { partitionIid, partitionDirichlet } from './data/partition.js';
export { createParticipation } from './data/participation.js';
export { mulberry32, normal } from './random.js';
export { VECTOR_ATTACKS, byzantineVectors, alieZ, inverseNormalCdf, optimalAttack, type VectorAttack, type AttackInput } from './attacks.js';
