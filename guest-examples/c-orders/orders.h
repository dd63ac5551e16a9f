/* The order logic of guest-examples/rust-orders (src/orders.rs), in C, free of bindings.
 * app.c maps the WIT types onto orders_process(); orders.c holds the logic and a JSON
 * parser/writer that behaves like serde_json (see README.md). */
#ifndef ORDERS_H
#define ORDERS_H

#include <stddef.h>
#include <stdint.h>

#define ORDERS_DEFAULT_TOPIC_PREFIX "persistent://public/default/orders-"
#define ORDERS_DEFAULT_PROCESSED_BY "shardline-orders"
#define ORDERS_REGION_PROPERTY "order.region"

/* A growable byte buffer; `ptr` is malloc'ed (or NULL when empty). */
typedef struct {
  char *ptr;
  size_t len, cap;
} buf_t;

typedef struct {
  const char *topic_prefix;
  size_t topic_prefix_len;
  const char *processed_by;
  size_t processed_by_len;
} orders_settings_t;

typedef enum { ORDERS_OK, ORDERS_FILTERED, ORDERS_REJECTED } orders_status_t;
typedef enum { ORDERS_DESERIALIZE, ORDERS_TRANSFORM, ORDERS_ROUTE } orders_stage_t;

/* What the fused pipeline makes of one record. Buffers belong to the caller, who takes
 * them (and sets them to zero) or frees them with orders_result_free. */
typedef struct {
  orders_status_t status;
  /* ORDERS_REJECTED */
  orders_stage_t stage;
  buf_t reason;
  /* ORDERS_OK */
  buf_t key, payload, region;
  buf_t topics[2];
  size_t topic_count;
} orders_result_t;

void orders_process(const uint8_t *data, size_t len, const orders_settings_t *settings,
                    orders_result_t *out);
void orders_result_free(orders_result_t *r);

#endif
