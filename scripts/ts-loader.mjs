// Lets Node run the TypeScript sources directly (tests, bench, dev CLI): tsx for .ts, plus
// a hook that imports .wgsl files as strings, as rollup and the test server do.
import { register } from 'node:module';
import { register as registerTsx } from 'tsx/esm/api';

registerTsx();
register(new URL('./wgsl-hook.mjs', import.meta.url));
