/** Property-based fuzzing of the NFQUEUE first-packet reader (targets/nfqueue.ts says what is checked). */
import { describe } from 'node:test';
import { fuzzTests } from './fuzz.js';
import { nfqueueTarget } from './targets/nfqueue.js';

describe('fuzz: NFQUEUE packets', () => fuzzTests(nfqueueTarget));
