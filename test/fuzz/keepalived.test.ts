/** Property-based fuzzing of the keepalived.conf reader (targets/keepalived.ts says what is checked). */
import { describe } from 'node:test';
import { fuzzTests } from './fuzz.js';
import { keepalivedTarget } from './targets/keepalived.js';

describe('fuzz: keepalived.conf', () => fuzzTests(keepalivedTarget));
