// Bundled by esbuild with --conditions=svelte (the only condition
// sveltekit-sse exports) into an IIFE: window.SKS.
export { source } from "sveltekit-sse";
