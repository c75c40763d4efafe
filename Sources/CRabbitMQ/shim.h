#ifndef TRACEBRIDGE_CRABBITMQ_SHIM_H
#define TRACEBRIDGE_CRABBITMQ_SHIM_H

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <stdint.h>

/* amqp_login_with_properties is variadic, which Swift cannot call: log in with PLAIN and
   announce the consumer_cancel_notify capability (a deleted queue then cancels the consumer
   instead of leaving it waiting forever). */
static inline amqp_rpc_reply_t tb_amqp_login(amqp_connection_state_t state, const char *vhost,
                                             int frame_max, int heartbeat, const char *user,
                                             const char *password) {
    amqp_table_entry_t capabilities[2];
    capabilities[0].key = amqp_cstring_bytes("consumer_cancel_notify");
    capabilities[0].value.kind = AMQP_FIELD_KIND_BOOLEAN;
    capabilities[0].value.value.boolean = 1;
    capabilities[1].key = amqp_cstring_bytes("basic.nack");
    capabilities[1].value.kind = AMQP_FIELD_KIND_BOOLEAN;
    capabilities[1].value.value.boolean = 1;
    amqp_table_entry_t entries[2];
    entries[0].key = amqp_cstring_bytes("capabilities");
    entries[0].value.kind = AMQP_FIELD_KIND_TABLE;
    entries[0].value.value.table.num_entries = 2;
    entries[0].value.value.table.entries = capabilities;
    entries[1].key = amqp_cstring_bytes("product");
    entries[1].value.kind = AMQP_FIELD_KIND_UTF8;
    entries[1].value.value.bytes = amqp_cstring_bytes("tracebridge");
    amqp_table_t properties;
    properties.num_entries = 2;
    properties.entries = entries;
    return amqp_login_with_properties(state, vhost, 0, frame_max, heartbeat, &properties,
                                      AMQP_SASL_METHOD_PLAIN, user, password);
}

static inline amqp_bytes_t tb_bytes(const void *bytes, size_t len) {
    amqp_bytes_t b;
    b.len = len;
    b.bytes = (void *)bytes;
    return b;
}

static inline amqp_table_t tb_empty_table(void) { return amqp_empty_table; }

#endif
