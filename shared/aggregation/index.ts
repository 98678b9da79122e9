export { weightedMean } from './mean.js';
export { coordinateMedian, trimmedMean } from './coordinatewise.js';
export { krum, multiKrum, krumScores } from './krum.js';
export { geometricMedian, type GeometricMedianOptions } from './geometric-median.js';
export { centeredClipping, type CenteredClippingOptions } from './centered-clipping.js';
export { nearestNeighborMixing, nna } from './nnm.js';
export { momentumStep } from './momentum.js';
export { pairwiseSquaredDistances } from './distances.js';
export { FedAUEstimator, type FedAUSnapshot } from './fedau.js';
export { stalenessWeight, type StalenessSpec } from './staleness.js';
export { RobustAggregator, minInputs, type RobustSnapshot, type RobustSpec, type RuleName, type MixName } from './robust.js';
export { ServerOptimizer, type ServerOptimizerSnapshot, type ServerOptimizerSpec } from './server-optimizer.js';
export {
  ServerAggregator,
  weightingScales,
  type Contribution,
  type PipelineSpec,
  type ServerAggregatorSnapshot,
  type StepResult,
  type Weighting,
} from './pipeline.js';
export { FedBuffBuffer, type FedBuffOptions, type FedBuffAddResult, type FedBuffReady, type FedBuffSnapshot } from './fedbuff.js';
