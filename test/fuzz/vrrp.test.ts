/** Property-based fuzzing of vrrp packets (targets/vrrp.ts says what is checked). */
import { describe } from 'node:test';
import { fuzzTests } from './fuzz.js';
import { vrrpTarget } from './targets/vrrp.js';

describe('fuzz: vrrp', () => fuzzTests(vrrpTarget));
