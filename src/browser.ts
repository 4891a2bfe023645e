// The self-contained browser build (dist/rullama.js): one <script type="module"> registers the elements.
import { defineElements } from './elements/define.js';

export * from './index.js';
defineElements();
