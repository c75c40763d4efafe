/* The broker's limit for scripts/bench_amqp: drain a queue with rabbitmq-c, manual acks
   batched with `multiple` (prefetch 1000, ack every 500), doing nothing with the messages.
   usage: bench_amqp_bare HOST PORT QUEUE COUNT [PREFETCH HOLD]   -> prints "<count> <seconds>"
   With PREFETCH and HOLD: that prefetch, and every 500 deliveries (every PREFETCH - HOLD when
   that is fewer, or the broker would stop sending) it acknowledges up to the one HOLD
   deliveries back, so that about HOLD messages stay unacknowledged, as they do with a
   consumer that acknowledges after a commit (the rest when all have arrived). */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 5 && argc != 7) {
    fprintf(stderr, "usage: %s HOST PORT QUEUE COUNT [PREFETCH HOLD]\n", argv[0]);
    return 2;
  }
  long want = atol(argv[4]);
  int prefetch = argc == 7 ? atoi(argv[5]) : 1000;
  long hold = argc == 7 ? atol(argv[6]) : 0;
  if (want < 1 || prefetch < 1 || prefetch > 65535 || hold < 0 || hold >= prefetch) {
    fprintf(stderr, "COUNT must be positive, PREFETCH 1-65535, HOLD 0 to PREFETCH-1\n");
    return 2;
  }
  long step = prefetch - hold < 500 ? prefetch - hold : 500;
  /* The delivery tag of each delivery (tags are per channel, 1, 2, ... here, but read them). */
  uint64_t *tags = malloc(sizeof(uint64_t) * (size_t)(want + 1));
  if (!tags) { fprintf(stderr, "out of memory\n"); return 1; }
  amqp_connection_state_t conn = amqp_new_connection();
  amqp_socket_t *socket = amqp_tcp_socket_new(conn);
  if (amqp_socket_open(socket, argv[1], atoi(argv[2])) != AMQP_STATUS_OK) { fprintf(stderr, "connect failed\n"); return 1; }
  amqp_rpc_reply_t r = amqp_login(conn, "/", 0, 131072, 30, AMQP_SASL_METHOD_PLAIN, "guest", "guest");
  if (r.reply_type != AMQP_RESPONSE_NORMAL) { fprintf(stderr, "login failed\n"); return 1; }
  amqp_channel_open(conn, 1);
  amqp_basic_qos(conn, 1, 0, (uint16_t)prefetch, 0);
  amqp_basic_consume(conn, 1, amqp_cstring_bytes(argv[3]), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
  if (amqp_get_rpc_reply(conn).reply_type != AMQP_RESPONSE_NORMAL) { fprintf(stderr, "consume failed\n"); return 1; }
  long got = 0;
  double start = 0;
  uint64_t last = 0;
  while (got < want) {
    amqp_envelope_t env;
    amqp_maybe_release_buffers(conn);
    struct timeval tv = {30, 0};
    r = amqp_consume_message(conn, &env, &tv, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) { fprintf(stderr, "stopped after %ld\n", got); break; }
    if (got == 0) start = now();
    got++;
    last = env.delivery_tag;
    tags[got] = last;
    if (got % step == 0 && got > hold) amqp_basic_ack(conn, 1, tags[got - hold], 1);
    amqp_destroy_envelope(&env);
  }
  amqp_basic_ack(conn, 1, last, 1);
  printf("%ld %.3f\n", got, now() - start);
  free(tags);
  amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
  amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(conn);
  return got == want ? 0 : 1;
}
