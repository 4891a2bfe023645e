/** WGSL sources are imported as strings; rollup, the test server and the Node loader inline them. */
declare module '*.wgsl' {
  const source: string;
  export default source;
}
