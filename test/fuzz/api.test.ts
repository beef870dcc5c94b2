/** Property-based fuzzing of the control API's request bodies (targets/api.ts says what is checked). */
import { after, describe } from 'node:test';
import { fuzzTests } from './fuzz.js';
import { apiTarget, stopApi } from './targets/api.js';

describe('fuzz: API bodies', () => {
  after(() => stopApi());
  fuzzTests(apiTarget);
});
