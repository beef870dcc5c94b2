/** Property-based fuzzing of the ipvsadm command line parser (targets/ipvsadm.ts says what is checked). */
import { describe } from 'node:test';
import { fuzzTests } from './fuzz.js';
import { ipvsadmTarget } from './targets/ipvsadm.js';

describe('fuzz: ipvsadm argv', () => fuzzTests(ipvsadmTarget));
