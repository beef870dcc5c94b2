/** Property-based fuzzing of sync packets (targets/sync.ts says what is checked). */
import { describe } from 'node:test';
import { fuzzTests } from './fuzz.js';
import { syncTarget } from './targets/sync.js';

describe('fuzz: sync', () => fuzzTests(syncTarget));
