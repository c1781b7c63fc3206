// The stub deployed over roomcast-edge by the teardown (wrangler.toml beside it): it exports no
// Durable Object class, so the `deleted_classes` migration can apply.
export default {
  fetch() {
    return new Response("roomcast-edge has been torn down\n", { status: 410 });
  },
};
