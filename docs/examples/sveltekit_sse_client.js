// In a Svelte component, sveltekit-sse's own client (npm sveltekit-sse):
import { source } from "sveltekit-sse";

// The server names the event "price": select it by that name.
export const price = source("/prices").select("price").json();
// In the markup: {$price?.symbol} {$price?.price}
