/** Property-based fuzzing of the YAML configuration reader (targets/yaml.ts says what is checked). */
import { describe } from 'node:test';
import { fuzzTests } from './fuzz.js';
import { yamlTarget } from './targets/yaml.js';

describe('fuzz: YAML config', () => fuzzTests(yamlTarget));
