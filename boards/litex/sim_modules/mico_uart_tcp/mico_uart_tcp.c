/*
 * mico_uart_tcp: the emulated board's UART as a TCP server (litex_sim module).
 *
 * Derived from LiteX's serial2tcp module (Copyright (c) LiteX developers,
 * BSD-2-Clause), changed where a benchmark link needs it:
 *   - it listens on 127.0.0.1 only (serial2tcp listens on every interface);
 *   - host -> board has flow control: bytes are taken from the socket only
 *     while the 2 KiB receive ring has room, so the ring cannot overflow (TCP
 *     holds the rest back); serial2tcp read 1 KiB at a time into it unchecked;
 *   - board -> host bytes are batched into one send() per burst, with
 *     MSG_NOSIGNAL: a client that goes away no longer kills the simulator;
 *     while no client is connected the bytes are dropped, as on a UART whose
 *     cable is unplugged; while the client does not read, TX backs up into the
 *     SoC's UART FIFO (tx_ready low) instead of losing bytes;
 *   - a new client replaces the previous one (reconnect after a cut link).
 * Args (sim_config.js): {"port": N}.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <event2/event.h>
#include <json-c/json.h>
#include "error.h"
#include "modules.h"

#define RX_RING 2048
#define TX_BUF 8192
#define TX_IDLE_FLUSH 32   /* clock cycles without TX before a partial batch is sent */

struct session_s {
  char *tx, *tx_valid, *tx_ready;
  char *rx, *rx_valid, *rx_ready;
  char *sys_clk;
  struct event *ev;
  char ring[RX_RING];
  int ring_start, ring_len;
  char out[TX_BUF];
  int out_len, idle;
  int fd;   /* -1: no client */
  clk_edge_state_t edge;
};

static struct event_base *base;

static int get_arg(char *args, char *arg, char **val) {
  json_object *jsobj, *obj = NULL;
  *val = NULL;
  if (!args) { eprintf("mico_uart_tcp: missing args\n"); return RC_JSERROR; }
  jsobj = json_tokener_parse(args);
  if (!jsobj || !json_object_is_type(jsobj, json_type_object)) { eprintf("mico_uart_tcp: bad args %s\n", args); return RC_JSERROR; }
  if (!json_object_object_get_ex(jsobj, arg, &obj)) { eprintf("mico_uart_tcp: no %s in %s\n", arg, args); return RC_JSERROR; }
  *val = strdup(json_object_get_string(obj));
  json_object_put(jsobj);
  return RC_OK;
}

static void pads_get(struct pad_s *pads, char *name, void **signal) {
  int i = 0;
  *signal = NULL;
  while (pads && pads[i].name) {
    if (!strcmp(pads[i].name, name)) { *signal = (void *)pads[i].signal; return; }
    i++;
  }
}

static int mico_start(void *b) {
  base = (struct event_base *)b;
  return RC_OK;
}

static void drop_client(struct session_s *s) {
  if (s->ev) { event_del(s->ev); event_free(s->ev); s->ev = NULL; }
  if (s->fd >= 0) { close(s->fd); s->fd = -1; }
  s->out_len = 0;
}

static void fill_ring(struct session_s *s) {
  /* take only what fits: the rest stays in the socket (TCP flow control) */
  while (s->fd >= 0 && s->ring_len < RX_RING) {
    int at = (s->ring_start + s->ring_len) % RX_RING;
    int room = RX_RING - s->ring_len;
    if (room > RX_RING - at) room = RX_RING - at;
    ssize_t n = recv(s->fd, s->ring + at, (size_t)room, MSG_DONTWAIT);
    if (n > 0) { s->ring_len += (int)n; continue; }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) drop_client(s);
    break;
  }
}

static void read_cb(evutil_socket_t fd, short what, void *arg) {
  struct session_s *s = (struct session_s *)arg;
  (void)fd;
  if (what & EV_READ) fill_ring(s);
}

static void flush_out(struct session_s *s) {
  int off = 0;
  while (s->fd >= 0 && off < s->out_len) {
    ssize_t n = send(s->fd, s->out + off, (size_t)(s->out_len - off), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) { off += (int)n; continue; }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
    drop_client(s);
    return;
  }
  if (s->fd < 0) { s->out_len = 0; return; }
  memmove(s->out, s->out + off, (size_t)(s->out_len - off));
  s->out_len -= off;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *a, int len, void *ctx) {
  struct session_s *s = (struct session_s *)ctx;
  (void)l; (void)a; (void)len;
  drop_client(s);   /* a new client replaces the old one */
  s->fd = fd;
  s->ring_start = s->ring_len = 0;
  s->ev = event_new(base, fd, EV_READ | EV_PERSIST, read_cb, s);
  event_add(s->ev, NULL);
}

static void accept_error_cb(struct evconnlistener *l, void *ctx) {
  (void)ctx;
  eprintf("mico_uart_tcp: accept error\n");
  event_base_loopexit(evconnlistener_get_base(l), NULL);
}

static int mico_new(void **sess, char *args) {
  struct session_s *s;
  char *cport = NULL;
  int port = 0, ret;
  struct sockaddr_in sin;
  struct evconnlistener *listener;
  *sess = NULL;
  if ((ret = get_arg(args, "port", &cport)) != RC_OK) return ret;
  sscanf(cport, "%d", &port);
  free(cport);
  if (port <= 0 || port > 65535) { eprintf("mico_uart_tcp: invalid port\n"); return RC_ERROR; }
  s = (struct session_s *)calloc(1, sizeof *s);
  if (!s) return RC_NOENMEM;
  s->fd = -1;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = htons((unsigned short)port);
  listener = evconnlistener_new_bind(base, accept_cb, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
                                     (struct sockaddr *)&sin, sizeof sin);
  if (!listener) {
    eprintf("mico_uart_tcp: cannot listen on 127.0.0.1:%d\n", port);
    free(s);
    return RC_ERROR;
  }
  evconnlistener_set_error_cb(listener, accept_error_cb);
  printf("[mico_uart_tcp] listening on 127.0.0.1:%d\n", port);
  fflush(stdout);
  *sess = s;
  return RC_OK;
}

static int mico_add_pads(void *sess, struct pad_list_s *plist) {
  struct session_s *s = (struct session_s *)sess;
  if (!s || !plist) return RC_INVARG;
  if (!strcmp(plist->name, "serial")) {
    pads_get(plist->pads, "sink_data", (void **)&s->rx);
    pads_get(plist->pads, "sink_valid", (void **)&s->rx_valid);
    pads_get(plist->pads, "sink_ready", (void **)&s->rx_ready);
    pads_get(plist->pads, "source_data", (void **)&s->tx);
    pads_get(plist->pads, "source_valid", (void **)&s->tx_valid);
    pads_get(plist->pads, "source_ready", (void **)&s->tx_ready);
  }
  if (!strcmp(plist->name, "sys_clk")) pads_get(plist->pads, "sys_clk", (void **)&s->sys_clk);
  return RC_OK;
}

static int mico_tick(void *sess, uint64_t time_ps) {
  struct session_s *s = (struct session_s *)sess;
  (void)time_ps;
  if (!clk_pos_edge(&s->edge, *s->sys_clk)) return RC_OK;

  /* board -> host */
  if (*s->tx_ready && *s->tx_valid) {
    if (s->fd >= 0) s->out[s->out_len++] = *s->tx;
    s->idle = 0;
  } else if (s->out_len && ++s->idle >= TX_IDLE_FLUSH) {
    flush_out(s);
    s->idle = 0;
  }
  if (s->out_len >= TX_BUF / 2) flush_out(s);
  *s->tx_ready = s->out_len < TX_BUF;

  /* host -> board: one byte per cycle while the SoC takes it */
  *s->rx_valid = 0;
  if (s->ring_len) {
    *s->rx = s->ring[s->ring_start];
    *s->rx_valid = 1;
    if (*s->rx_ready) {
      s->ring_start = (s->ring_start + 1) % RX_RING;
      s->ring_len--;
    }
  }
  return RC_OK;
}

static struct ext_module_s ext_mod = {
  "mico_uart_tcp",
  mico_start,
  mico_new,
  mico_add_pads,
  NULL,
  mico_tick
};

int litex_sim_ext_module_init(int (*register_module)(struct ext_module_s *)) {
  return register_module(&ext_mod);
}
