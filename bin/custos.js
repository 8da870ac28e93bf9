#!/usr/bin/env node
// The `custos` executable. The sources are TypeScript run through tsx's loader, so a
// checkout works without a build step; the CLI itself lives in src/cli/main.ts.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
