/* Unit tests: bus (req/rep on one loop over ipc://, pub/sub, forwarder). */
#include <ash_test.h>
#include <ashoon/bus.h>
#include <ashoon/json.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char url[128];

/* A fresh loopback TCP address. NNG 1.5.2 leaks a listener closed while a
 * connection to it is still being set up (ipc:// in about half the runs,
 * tcp:// in about a quarter, under LeakSanitizer): every test lets the
 * client connect (wait_peer) before it closes a server. */
static const char *
fresh_url(void)
{
	struct sockaddr_in a   = {.sin_family = AF_INET};
	socklen_t          len = sizeof(a);
	int                fd  = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASH_T_TRUE(bind(fd, (struct sockaddr *) &a, sizeof(a)) == 0);
	getsockname(fd, (struct sockaddr *) &a, &len);
	close(fd);
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", ntohs(a.sin_port));
	return url;
}

/* --- a tiny world: one loop, one server, one client -------------------- */

typedef struct world {
	ash_loop       *loop;
	ash_bus_server *srv;
	ash_bus_client *cli;
	int             answered; /* results received */
	int             want;     /* stop after this many */
	ash_bus_result  last;     /* copy of the last result (no body) */
	char            last_body[512];
	int             handled;  /* handler invocations */
	ash_bus_call   *held;     /* a call the handler kept */
	int             delay_ms; /* handler replies after this */
} world;

static void
world_open(world *w, int slots)
{
	ash_bus_server_opts so = {fresh_url(), slots, 1 << 20, "test"};
	ash_bus_client_opts co = {url, 1 << 20, "test"};

	memset(w, 0, sizeof(*w));
	ASH_T_OK(ash_loop_new(&w->loop));
	ASH_T_OK(ash_bus_server_open(w->loop, &so, &w->srv));
	ASH_T_OK(ash_bus_client_open(w->loop, &co, &w->cli));
}

static void
world_close(world *w)
{
	ash_bus_client_close(w->cli);
	ash_bus_server_close(w->srv);
	ash_loop_free(w->loop);
}

/* Waits (running the loop) until the client sees a peer. */
static void
wait_peer(world *w)
{
	for (int i = 0; i < 600 && ash_bus_client_peers(w->cli) == 0; i++)
		usleep(5000);
	ASH_T_EQ_INT(ash_bus_client_peers(w->cli), 1);
}

static void
on_result(void *arg, const ash_bus_result *r)
{
	world *w = arg;

	w->last         = *r;
	w->last.body    = NULL;
	w->last_body[0] = '\0';
	if (r->body) {
		char *s = ash_json_render(r->body);
		snprintf(w->last_body, sizeof(w->last_body), "%s", s);
		cJSON_free(s);
	}
	w->last.code    = NULL;
	w->last.message = NULL;
	if (r->code)
		snprintf(w->last_body, sizeof(w->last_body), "%s: %s", r->code,
		    r->message ? r->message : "");
	if (++w->answered == w->want)
		ash_loop_exit_when_idle(w->loop, 0);
}

static ash_err
send_echo(world *w, const char *data, int timeout_ms)
{
	cJSON           *b = cJSON_CreateObject();
	ash_bus_req_opts o = {.op = ASH_OP_SYS_ECHO,
	    .id                   = "r-test",
	    .deadline_ms          = ash_wall_ms() + timeout_ms};
	ash_err          rv;

	cJSON_AddStringToObject(b, "data", data);
	rv = ash_bus_request(w->cli, &o, b, on_result, w);
	cJSON_Delete(b);
	return rv;
}

static void
reply_echo(ash_bus_call *call)
{
	const ash_request *req = ash_bus_call_req(call);
	cJSON             *b   = cJSON_CreateObject();

	cJSON_AddItemToObject(b, "data",
	    cJSON_Duplicate(cJSON_GetObjectItem(req->body, "data"), true));
	ash_bus_call_reply(call, 200, b);
}

static void
on_later(evutil_socket_t fd, short what, void *arg)
{
	reply_echo(arg);
}

static void
h_echo(ash_bus_call *call, void *arg)
{
	world *w = arg;

	w->handled++;
	if (w->delay_ms == 0) {
		reply_echo(call);
		return;
	}
	struct timeval tv = {0, w->delay_ms * 1000};
	event_base_once(
	    ash_loop_base(w->loop), -1, EV_TIMEOUT, on_later, call, &tv);
}

static void
run(world *w, int want)
{
	w->want = want;
	ash_loop_run(w->loop);
}

ASH_TEST(request_reply_round_trip)
{
	world w;

	world_open(&w, 4);
	ash_bus_server_handle(w.srv, ASH_OP_SYS_ECHO, h_echo, &w);
	ASH_T_OK(ash_bus_server_start(w.srv));
	wait_peer(&w);
	ASH_T_OK(send_echo(&w, "hello \xc3\xa9", 2000));
	run(&w, 1);
	ASH_T_OK(w.last.err);
	ASH_T_EQ_INT(w.last.status, 200);
	ASH_T_EQ_STR(w.last_body, "{\"data\":\"hello \xc3\xa9\"}");
	world_close(&w);
}

ASH_TEST(concurrent_requests_beyond_slots_all_answered)
{
	world w;

	world_open(&w, 4);
	w.delay_ms = 20;
	ash_bus_server_handle(w.srv, ASH_OP_SYS_ECHO, h_echo, &w);
	ASH_T_OK(ash_bus_server_start(w.srv));
	wait_peer(&w);
	for (int i = 0; i < 40; i++)
		ASH_T_OK(send_echo(&w, "x", 5000));
	run(&w, 40);
	ASH_T_EQ_INT(w.answered, 40);
	ASH_T_EQ_INT(w.handled, 40);
	ASH_T_OK(w.last.err);
	world_close(&w);
}

ASH_TEST(unserved_op_is_404_with_reason)
{
	world            w;
	ash_bus_req_opts o = {.op = ASH_OP_SYS_INFO, .id = "r-1"};

	world_open(&w, 2);
	ASH_T_OK(ash_bus_server_start(w.srv));
	wait_peer(&w);
	o.deadline_ms = ash_wall_ms() + 2000;
	ASH_T_OK(ash_bus_request(w.cli, &o, NULL, on_result, &w));
	run(&w, 1);
	ASH_T_EQ_INT(w.last.status, 404);
	ASH_T_EQ_STR(
	    w.last_body, "not_found: op sys.info is not served by test");
	world_close(&w);
}

ASH_TEST(no_peer_fails_at_once)
{
	world   w;
	int64_t t0;

	world_open(&w, 2);
	wait_peer(&w);
	ash_bus_server_close(w.srv); /* nobody listens any more */
	w.srv = NULL;
	usleep(50000);
	t0 = ash_now_ms();
	ASH_T_ERR(send_echo(&w, "x", 5000), ASH_EUNAVAIL);
	ASH_T_TRUE(ash_now_ms() - t0 < 100);
	world_close(&w);
}

ASH_TEST(deadline_passes_then_late_reply_is_harmless)
{
	world w;

	world_open(&w, 2);
	w.delay_ms = 300;
	ash_bus_server_handle(w.srv, ASH_OP_SYS_ECHO, h_echo, &w);
	ASH_T_OK(ash_bus_server_start(w.srv));
	wait_peer(&w);
	ASH_T_OK(send_echo(&w, "slow", 100));
	run(&w, 1);
	ASH_T_ERR(w.last.err, ASH_ETIMEDOUT);
	/* Let the handler's late reply happen on the same loop. */
	struct timeval tv = {0, 400000};
	event_base_loopexit(ash_loop_base(w.loop), &tv);
	event_base_dispatch(ash_loop_base(w.loop));
	ASH_T_EQ_INT(ash_bus_server_inflight(w.srv), 0);
	ASH_T_ERR(send_echo(&w, "x", -1), ASH_ETIMEDOUT); /* already late */
	world_close(&w);
}

static void
h_bad_reply(ash_bus_call *call, void *arg)
{
	ash_bus_call_reply(call, 200, cJSON_CreateObject()); /* no "data" */
}

ASH_TEST(reply_breaking_the_contract_becomes_500)
{
	world w;

	world_open(&w, 2);
	ash_bus_server_handle(w.srv, ASH_OP_SYS_ECHO, h_bad_reply, &w);
	ASH_T_OK(ash_bus_server_start(w.srv));
	wait_peer(&w);
	ASH_T_OK(send_echo(&w, "x", 2000));
	run(&w, 1);
	ASH_T_EQ_INT(w.last.status, 500);
	ASH_T_CONTAINS(w.last_body, "internal");
	world_close(&w);
}

/* A raw REQ socket: what a buggy or hostile peer could send (len bytes,
 * NULs included). */
static int
raw_call_n(
    const char *u, const char *payload, size_t len, char *out, size_t cap)
{
	nng_socket s;
	char      *buf = NULL;
	size_t     n;
	int        rv;

	nng_req0_open(&s);
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 300);
	nng_dial(s, u, NULL, 0);
	nng_send(s, (void *) payload, len, 0);
	rv = nng_recv(s, &buf, &n, NNG_FLAG_ALLOC);
	if (rv == 0) {
		snprintf(out, cap, "%.*s", (int) n, buf);
		nng_free(buf, n);
	}
	nng_close(s);
	return rv;
}

static int
raw_call(const char *u, const char *payload, char *out, size_t cap)
{
	return raw_call_n(u, payload, strlen(payload), out, cap);
}

static void *
raw_thread(void *arg)
{
	world *w = arg;
	char   out[512], env[256];

	ASH_T_EQ_INT(raw_call(url, "{not json", out, sizeof(out)), 0);
	snprintf(w->last_body, sizeof(w->last_body), "%s", out);
	/* Deadline in the past: dropped, never handled, never answered. */
	snprintf(env, sizeof(env),
	    "{\"v\":1,\"op\":\"sys.echo\",\"id\":\"r-late\","
	    "\"deadline_ms\":1000,\"body\":{\"data\":1}}");
	w->answered = raw_call(url, env, out, sizeof(out));
	return NULL;
}

static void
on_thread_done(evutil_socket_t fd, short what, void *arg)
{
	ash_loop_exit_when_idle(arg, 0);
}

/* Opens w with h serving sys.echo, runs peer (a thread sending raw
 * messages to it) while the loop runs for ms, and joins it. */
static void
run_raw_peer(world *w, ash_bus_handler h, void *(*peer)(void *), int ms)
{
	pthread_t      t;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	world_open(w, 2);
	ash_bus_server_handle(w->srv, ASH_OP_SYS_ECHO, h, w);
	ASH_T_OK(ash_bus_server_start(w->srv));
	pthread_create(&t, NULL, peer, w);
	event_base_once(ash_loop_base(w->loop), -1, EV_TIMEOUT, on_thread_done,
	    w->loop, &tv);
	ash_loop_run(w->loop);
	pthread_join(t, NULL);
}

ASH_TEST(malformed_envelope_gets_400_and_late_one_is_dropped)
{
	world w;

	run_raw_peer(&w, h_echo, raw_thread, 1000);
	ASH_T_CONTAINS(w.last_body, "\"status\":400");
	ASH_T_CONTAINS(w.last_body, "malformed_json");
	ASH_T_EQ_INT(w.answered, NNG_ETIMEDOUT);
	ASH_T_EQ_INT(w.handled, 0);
	world_close(&w);
}

static void
h_hold(ash_bus_call *call, void *arg)
{
	world *w = arg;
	w->handled++;
	w->held = call;
}

static void
on_release_held(evutil_socket_t fd, short what, void *arg)
{
	world *w = arg;
	reply_echo(w->held);
	w->held = NULL;
}

static void
on_stop_recv(evutil_socket_t fd, short what, void *arg)
{
	world         *w  = arg;
	struct timeval tv = {0, 200000};

	/* Drain with one call in the handler: stop receiving, then finish
	 * it; a request sent after the drain started is not handled. */
	ash_bus_server_stop_recv(w->srv);
	ASH_T_OK(send_echo(w, "after", 500));
	event_base_once(
	    ash_loop_base(w->loop), -1, EV_TIMEOUT, on_release_held, w, &tv);
}

ASH_TEST(drain_finishes_inflight_and_takes_nothing_new)
{
	world w;

	world_open(&w, 2);
	ash_bus_server_handle(w.srv, ASH_OP_SYS_ECHO, h_hold, &w);
	ASH_T_OK(ash_bus_server_start(w.srv));
	wait_peer(&w);
	ASH_T_OK(send_echo(&w, "first", 3000));
	struct timeval tv = {0, 100000};
	event_base_once(
	    ash_loop_base(w.loop), -1, EV_TIMEOUT, on_stop_recv, &w, &tv);
	run(&w, 2);
	ASH_T_EQ_INT(w.handled, 1); /* "after" never reached the handler */
	ASH_T_EQ_INT(w.answered, 2);
	ASH_T_ERR(w.last.err, ASH_ETIMEDOUT); /* the last to finish: "after" */
	world_close(&w);
}

static void
on_close_server(evutil_socket_t fd, short what, void *arg)
{
	world *w = arg;
	ash_bus_server_close(w->srv);
	w->srv = NULL;
	reply_echo(w->held); /* the handler finishes after the close */
	w->held = NULL;
}

ASH_TEST(server_gone_under_a_request_fails_it_at_once)
{
	world   w;
	int64_t t0;

	world_open(&w, 2);
	ash_bus_server_handle(w.srv, ASH_OP_SYS_ECHO, h_hold, &w);
	ASH_T_OK(ash_bus_server_start(w.srv));
	wait_peer(&w);
	t0 = ash_now_ms();
	ASH_T_OK(send_echo(&w, "x", 5000));
	struct timeval tv = {0, 100000};
	event_base_once(
	    ash_loop_base(w.loop), -1, EV_TIMEOUT, on_close_server, &w, &tv);
	run(&w, 1);
	/* Not the 5 s deadline: the reset is reported as soon as it happens,
	 * and the request is not silently sent again. */
	ASH_T_ERR(w.last.err, ASH_EUNAVAIL);
	ASH_T_TRUE(ash_now_ms() - t0 < 2000);
	ASH_T_EQ_INT(w.handled, 1);
	world_close(&w);
}

ASH_TEST(client_close_cancels_outstanding_requests)
{
	world          w;
	struct timeval tv = {0, 100000};

	world_open(&w, 2);
	ash_bus_server_handle(w.srv, ASH_OP_SYS_ECHO, h_hold, &w);
	ASH_T_OK(ash_bus_server_start(w.srv));
	wait_peer(&w);
	ASH_T_OK(send_echo(&w, "x", 5000));
	event_base_once(ash_loop_base(w.loop), -1, EV_TIMEOUT, on_thread_done,
	    w.loop, &tv);
	ash_loop_run(w.loop); /* the handler takes the call and keeps it */
	ASH_T_EQ_INT(w.handled, 1);
	ASH_T_EQ_INT(w.answered, 0);
	ash_bus_client_close(w.cli);
	w.cli = NULL;
	ASH_T_EQ_INT(w.answered, 1);
	ASH_T_ERR(w.last.err, ASH_ECANCELED);
	/* The server closes while its handler still holds the call; the late
	 * reply is discarded and frees what is left (ASan checks). */
	ash_bus_server_close(w.srv);
	w.srv = NULL;
	reply_echo(w.held);
	world_close(&w);
}

/* --- coalescing: batch frames ------------------------------------------ */

typedef struct slotres {
	world  *w;
	int     status;
	ash_err err;
	char    body[128];
} slotres;

static void
on_slot_result(void *arg, const ash_bus_result *r)
{
	slotres *s = arg;
	char    *t = r->body ? ash_json_render(r->body) : NULL;

	s->err    = r->err;
	s->status = r->status;
	snprintf(
	    s->body, sizeof(s->body), "%s", t ? t : (r->code ? r->code : "-"));
	cJSON_free(t);
	if (++s->w->answered == s->w->want)
		ash_loop_exit_when_idle(s->w->loop, 0);
}

static void
send_coalesced_by(
    world *w, int op, const char *data, int timeout_ms, slotres *out)
{
	cJSON           *b = cJSON_CreateObject();
	ash_bus_req_opts o = {.op = op,
	    .id                   = "r-co",
	    .deadline_ms          = ash_wall_ms() + timeout_ms,
	    .coalesce             = true};

	out->w = w;
	cJSON_AddStringToObject(b, "data", data);
	ASH_T_OK(ash_bus_request(w->cli, &o, b, on_slot_result, out));
	cJSON_Delete(b);
}

static void
send_coalesced(world *w, int op, const char *data, slotres *out)
{
	send_coalesced_by(w, op, data, 3000, out);
}

/* A world whose server counts into a new registry and answers sys.echo
 * with h; ready once the client sees it. */
static ash_metrics *
world_open_counted(world *w, int slots, ash_bus_handler h, int delay_ms)
{
	ash_metrics *reg = ash_metrics_new();

	world_open(w, slots);
	ash_bus_server_set_metrics(w->srv, reg);
	w->delay_ms = delay_ms;
	ash_bus_server_handle(w->srv, ASH_OP_SYS_ECHO, h, w);
	ASH_T_OK(ash_bus_server_start(w->srv));
	wait_peer(w);
	return reg;
}

ASH_TEST(coalesced_requests_share_one_frame_and_each_gets_its_reply)
{
	world   w;
	slotres r[6] = {0};
	char   *text, data[16];
	/* Delayed: replies end out of order with the others'. */
	ash_metrics *reg = world_open_counted(&w, 2, h_echo, 20);

	for (int i = 0; i < 5; i++) {
		snprintf(data, sizeof(data), "d%d", i);
		send_coalesced(&w, ASH_OP_SYS_ECHO, data, &r[i]);
	}
	/* One op nobody serves: only that item fails. */
	send_coalesced(&w, ASH_OP_SYS_INFO, "x", &r[5]);
	run(&w, 6);
	for (int i = 0; i < 5; i++) {
		char want[32];
		snprintf(want, sizeof(want), "{\"data\":\"d%d\"}", i);
		ASH_T_OK(r[i].err);
		ASH_T_EQ_INT(r[i].status, 200);
		ASH_T_EQ_STR(r[i].body, want);
	}
	ASH_T_EQ_INT(r[5].status, 404);
	ASH_T_EQ_STR(r[5].body, "not_found");
	ASH_T_EQ_INT(w.handled, 5);
	/* All six travelled in one frame, each counted as its own request. */
	text = ash_metrics_render(reg);
	ASH_T_CONTAINS(text, "ashoon_bus_batch_frames_total 1\n");
	ASH_T_CONTAINS(text, "ashoon_bus_batch_items_total 6\n");
	ASH_T_CONTAINS(text,
	    "ashoon_bus_requests_total{op=\"sys.echo\",status=\"200\"} 5");
	free(text);
	world_close(&w);
	ash_metrics_free(reg);
}

/* Echoes, except "fail", which is answered not found. */
static void
h_echo_or_fail(ash_bus_call *call, void *arg)
{
	const ash_request *req  = ash_bus_call_req(call);
	const char        *data = ash_json_str(req->body, "data");

	((world *) arg)->handled++;
	if (data != NULL && strcmp(data, "fail") == 0)
		ash_bus_call_fail(call, ASH_ENOTFOUND, "no such thing");
	else
		reply_echo(call);
}

ASH_TEST(bus_metrics_count_each_status_of_an_op)
{
	/* The server keeps an op's counter handle for its last status: an
	 * op answered 200, 404, 200, ... counts each status on its own. */
	static const char *data[] = {"a", "fail", "b", "c", "fail", "d"};
	world              w;
	slotres            r[6] = {0};
	ash_metrics       *reg  = world_open_counted(&w, 2, h_echo_or_fail, 0);
	char              *text;

	for (int i = 0; i < 6; i++)
		send_coalesced(&w, ASH_OP_SYS_ECHO, data[i], &r[i]);
	run(&w, 6);
	ASH_T_EQ_INT(r[1].status, 404);
	ASH_T_EQ_INT(r[2].status, 200);
	text = ash_metrics_render(reg);
	ASH_T_CONTAINS(text,
	    "ashoon_bus_requests_total{op=\"sys.echo\",status=\"200\"} 4\n");
	ASH_T_CONTAINS(text,
	    "ashoon_bus_requests_total{op=\"sys.echo\",status=\"404\"} 2\n");
	ASH_T_CONTAINS(
	    text, "ashoon_bus_request_seconds_count{op=\"sys.echo\"} 6\n");
	free(text);
	world_close(&w);
	ash_metrics_free(reg);
}

ASH_TEST(lone_coalescing_request_goes_as_a_plain_envelope)
{
	world        w;
	slotres      r   = {0};
	ash_metrics *reg = world_open_counted(&w, 2, h_echo, 0);
	char        *text;

	send_coalesced(&w, ASH_OP_SYS_ECHO, "solo", &r);
	run(&w, 1);
	ASH_T_EQ_STR(r.body, "{\"data\":\"solo\"}");
	text = ash_metrics_render(reg);
	ASH_T_CONTAINS(text, "ashoon_bus_requests_total");
	ASH_T_TRUE(strstr(text, "ashoon_bus_batch_frames_total") == NULL);
	free(text);
	world_close(&w);
	ash_metrics_free(reg);
}

/* Coalescing requests made at set times, each in its own loop turn. */
typedef struct timed_send {
	world   *w;
	int      at_ms, timeout_ms;
	char     data[16];
	slotres *out;
} timed_send;

static void
on_timed_send(evutil_socket_t fd, short what, void *arg)
{
	timed_send *t = arg;

	send_coalesced_by(
	    t->w, ASH_OP_SYS_ECHO, t->data, t->timeout_ms, t->out);
}

static void
schedule_sends(world *w, timed_send *t, slotres *r, int n)
{
	for (int i = 0; i < n; i++) {
		struct timeval tv = {0, t[i].at_ms * 1000};
		t[i].w            = w;
		t[i].out          = &r[i];
		snprintf(t[i].data, sizeof(t[i].data), "d%d", i);
		event_base_once(ash_loop_base(w->loop), -1, EV_TIMEOUT,
		    on_timed_send, &t[i], &tv);
	}
}

ASH_TEST(coalesced_requests_wait_while_two_frames_are_out_then_go_as_one)
{
	world   w;
	slotres r[4] = {0};
	/* 60 ms apart, so a slow loop turn does not merge two sends. */
	timed_send t[4] = {{.at_ms = 0, .timeout_ms = 3000},
	    {.at_ms = 60, .timeout_ms = 3000},
	    {.at_ms = 120, .timeout_ms = 3000},
	    {.at_ms = 180, .timeout_ms = 3000}};
	/* Four slots: the server could take all four at once. */
	ash_metrics *reg = world_open_counted(&w, 4, h_echo, 400);
	char        *text;

	schedule_sends(&w, t, r, 4);
	run(&w, 4);
	for (int i = 0; i < 4; i++) {
		char want[32];
		snprintf(want, sizeof(want), "{\"data\":\"d%d\"}", i);
		ASH_T_OK(r[i].err);
		ASH_T_EQ_STR(r[i].body, want);
	}
	/* d0 and d1 went alone, one frame each; d2 and d3 waited for one of
	 * those to come back and then travelled together. */
	ASH_T_EQ_INT(w.handled, 4);
	text = ash_metrics_render(reg);
	ASH_T_CONTAINS(text, "ashoon_bus_batch_frames_total 1\n");
	ASH_T_CONTAINS(text, "ashoon_bus_batch_items_total 2\n");
	free(text);
	world_close(&w);
	ash_metrics_free(reg);
}

ASH_TEST(coalesced_request_whose_deadline_passes_while_held_times_out)
{
	world      w;
	slotres    r[3] = {0};
	timed_send t[3] = {{.at_ms = 0, .timeout_ms = 3000},
	    {.at_ms = 60, .timeout_ms = 3000},
	    {.at_ms = 120, .timeout_ms = 100}};

	world_open(&w, 4);
	w.delay_ms = 400; /* the first frame is back long after d2's 100 ms */
	ash_bus_server_handle(w.srv, ASH_OP_SYS_ECHO, h_echo, &w);
	ASH_T_OK(ash_bus_server_start(w.srv));
	wait_peer(&w);
	schedule_sends(&w, t, r, 3);
	run(&w, 3);
	ASH_T_OK(r[0].err);
	ASH_T_OK(r[1].err);
	ASH_T_ERR(r[2].err, ASH_ETIMEDOUT);
	ASH_T_EQ_INT(w.handled, 2); /* never sent */
	world_close(&w);
}

static void *
raw_batch_thread(void *arg)
{
	world *w = arg;
	char   out[512];

	ASH_T_EQ_INT(raw_call(url, "[]", out, sizeof(out)), 0);
	ASH_T_CONTAINS(out, "\"status\":400");
	ASH_T_EQ_INT(raw_call(url, "[1,2", out, sizeof(out)), 0);
	ASH_T_CONTAINS(out, "\"status\":400");
	/* Items are answered in place: a non-envelope, a late one, a good
	 * one. */
	ASH_T_EQ_INT(
	    raw_call(url,
	        "[1,{\"v\":1,\"op\":\"sys.echo\",\"id\":\"r-late\","
	        "\"deadline_ms\":1000,\"body\":{\"data\":\"a\"}},"
	        "{\"v\":1,\"op\":\"sys.echo\",\"id\":\"r-ok\","
	        "\"deadline_ms\":99999999999999,\"body\":{\"data\":\"b\"}}]",
	        out, sizeof(out)),
	    0);
	snprintf(w->last_body, sizeof(w->last_body), "%s", out);
	return NULL;
}

ASH_TEST(malformed_batch_frames_and_items_get_their_errors)
{
	world  w;
	cJSON *doc = NULL;

	run_raw_peer(&w, h_echo, raw_batch_thread, 1500);
	ASH_T_OK(ash_json_parse(w.last_body, strlen(w.last_body), &doc));
	ASH_T_EQ_INT(cJSON_GetArraySize(doc), 3);
	ASH_T_EQ_INT(
	    (int) cJSON_GetObjectItem(cJSON_GetArrayItem(doc, 0), "status")
	        ->valuedouble,
	    400);
	ASH_T_EQ_INT(
	    (int) cJSON_GetObjectItem(cJSON_GetArrayItem(doc, 1), "status")
	        ->valuedouble,
	    504);
	ASH_T_EQ_STR(ash_json_str(cJSON_GetArrayItem(doc, 1), "id"), "r-late");
	ASH_T_EQ_INT(
	    (int) cJSON_GetObjectItem(cJSON_GetArrayItem(doc, 2), "status")
	        ->valuedouble,
	    200);
	ASH_T_EQ_INT(w.handled, 1);
	cJSON_Delete(doc);
	world_close(&w);
}

/* --- attachments -------------------------------------------------------- */

/* Answers sys.echo with what the call's attachment holds: "none", or its
 * length and bytes in hex ("3:410042"). */
static void
h_att(ash_bus_call *call, void *arg)
{
	const ash_request *req      = ash_bus_call_req(call);
	const uint8_t     *a        = req->att;
	cJSON             *b        = cJSON_CreateObject();
	char               txt[256] = "none";
	world             *w        = arg;

	w->handled++;
	if (a != NULL) {
		int at = snprintf(
		    txt, sizeof(txt), "%lld:", (long long) req->att_len);
		for (int64_t i = 0; i < req->att_len && at < 250; i++)
			at += snprintf(
			    txt + at, sizeof(txt) - (size_t) at, "%02x", a[i]);
	}
	cJSON_AddStringToObject(b, "data", txt);
	ash_bus_call_reply(call, 200, b);
}

static void
send_att(world *w, bool coalesce, const void *att, size_t len, slotres *out)
{
	cJSON           *b = cJSON_CreateObject();
	ash_bus_req_opts o = {.op = ASH_OP_SYS_ECHO,
	    .id                   = "r-att",
	    .deadline_ms          = ash_wall_ms() + 3000,
	    .coalesce             = coalesce,
	    .att                  = att,
	    .att_len              = len};

	out->w = w;
	cJSON_AddStringToObject(b, "data", "x");
	ASH_T_OK(ash_bus_request(w->cli, &o, b, on_slot_result, out));
	cJSON_Delete(b);
}

ASH_TEST(an_attachment_reaches_its_handler_byte_for_byte)
{
	world         w;
	slotres       r[2]  = {0};
	const uint8_t bin[] = {'{', 0, 0xff, '"', '\\', 0x80, '\n'};
	ash_metrics  *reg   = world_open_counted(&w, 2, h_att, 0);

	/* Bytes no JSON string could carry as they are: a NUL, a byte that is
	 * not UTF-8, quote, backslash. */
	send_att(&w, false, bin, sizeof(bin), &r[0]);
	send_att(&w, false, NULL, 0, &r[1]);
	run(&w, 2);
	ASH_T_EQ_INT(r[0].status, 200);
	ASH_T_EQ_STR(r[0].body, "{\"data\":\"7:7b00ff225c800a\"}");
	ASH_T_EQ_STR(r[1].body, "{\"data\":\"none\"}");
	world_close(&w);
	ash_metrics_free(reg);
}

ASH_TEST(coalesced_attachments_each_reach_their_own_call)
{
	world        w;
	slotres      r[4] = {0};
	char        *text;
	ash_metrics *reg = world_open_counted(&w, 2, h_att, 5);

	send_att(&w, true, "A\0B", 3, &r[0]);
	send_att(&w, true, NULL, 0, &r[1]); /* none, between two */
	send_att(&w, true, "", 0, &r[2]);   /* one of no bytes */
	send_att(&w, true, "CD", 2, &r[3]);
	run(&w, 4);
	ASH_T_EQ_STR(r[0].body, "{\"data\":\"3:410042\"}");
	ASH_T_EQ_STR(r[1].body, "{\"data\":\"none\"}");
	ASH_T_EQ_STR(r[2].body, "{\"data\":\"0:\"}");
	ASH_T_EQ_STR(r[3].body, "{\"data\":\"2:4344\"}");
	text = ash_metrics_render(reg);
	ASH_T_CONTAINS(text, "ashoon_bus_batch_frames_total 1\n");
	free(text);
	world_close(&w);
	ash_metrics_free(reg);
}

#define ATT_ENV(id, att)                                  \
	"{\"v\":1,\"op\":\"sys.echo\",\"id\":\"" id "\"," \
	"\"deadline_ms\":99999999999999," att "\"body\":{\"data\":1}}"

static void *
raw_att_thread(void *arg)
{
	char out[512];
	/* Each: a message as a buggy peer could send it, and its length. */
	static const struct {
		const char *msg;
		size_t      len;
		const char *want;
	} cases[] = {
	    /* "att" longer, then shorter, than what follows the NUL */
	    {ATT_ENV("r-a", "\"att\":5,") "\0abc",
	        sizeof(ATT_ENV("r-a", "\"att\":5,")) + 3, "\"status\":400"},
	    {ATT_ENV("r-b", "\"att\":1,") "\0abc",
	        sizeof(ATT_ENV("r-b", "\"att\":1,")) + 3, "\"status\":400"},
	    /* bytes after a NUL, and no "att" */
	    {ATT_ENV("r-c", "") "\0abc", sizeof(ATT_ENV("r-c", "")) + 3,
	        "\"status\":400"},
	    /* "att" that is not a length */
	    {ATT_ENV("r-d", "\"att\":-1,") "\0",
	        sizeof(ATT_ENV("r-d", "\"att\":-1,")), "\"status\":400"},
	    /* a batch whose items' lengths do not add up */
	    {"[" ATT_ENV("r-e", "\"att\":1,") "," ATT_ENV(
	         "r-f", "\"att\":1,") "]\0abc",
	        sizeof("[" ATT_ENV("r-e", "\"att\":1,") "," ATT_ENV(
	            "r-f", "\"att\":1,") "]") +
	            3,
	        "\"status\":400"},
	    /* and one that is right: answered item by item */
	    {"[" ATT_ENV("r-g", "\"att\":1,") "," ATT_ENV(
	         "r-h", "\"att\":2,") "]\0abc",
	        sizeof("[" ATT_ENV("r-g", "\"att\":1,") "," ATT_ENV(
	            "r-h", "\"att\":2,") "]") +
	            3,
	        "1:61"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ASH_T_EQ_INT(raw_call_n(url, cases[i].msg, cases[i].len, out,
		                 sizeof(out)),
		    0);
		ASH_T_CONTAINS(out, cases[i].want);
		if (i == sizeof(cases) / sizeof(cases[0]) - 1)
			ASH_T_CONTAINS(out, "2:6263");
	}
	return NULL;
}

ASH_TEST(attachments_that_do_not_fill_the_bytes_after_the_json_are_refused)
{
	world w;

	run_raw_peer(&w, h_att, raw_att_thread, 2000);
	/* Only the two items of the good batch reached the handler. */
	ASH_T_EQ_INT(w.handled, 2);
	world_close(&w);
}

ASH_TEST(client_close_cancels_pending_and_carried_coalesced_requests)
{
	world          w;
	slotres        r[3] = {0};
	struct timeval tv   = {0, 100000};

	world_open(&w, 2);
	ash_bus_server_handle(w.srv, ASH_OP_SYS_ECHO, h_hold, &w);
	ASH_T_OK(ash_bus_server_start(w.srv));
	wait_peer(&w);
	send_coalesced(&w, ASH_OP_SYS_ECHO, "a", &r[0]);
	send_coalesced(&w, ASH_OP_SYS_INFO, "b", &r[1]);
	event_base_once(ash_loop_base(w.loop), -1, EV_TIMEOUT, on_thread_done,
	    w.loop, &tv);
	ash_loop_run(w.loop); /* the frame is out; its echo is held */
	ASH_T_EQ_INT(w.handled, 1);
	ASH_T_EQ_INT(w.answered, 0);
	/* One more, still pending (no loop turn since). */
	send_coalesced(&w, ASH_OP_SYS_ECHO, "c", &r[2]);
	ash_bus_client_close(w.cli);
	w.cli = NULL;
	ASH_T_EQ_INT(w.answered, 3);
	for (int i = 0; i < 3; i++)
		ASH_T_ERR(r[i].err, ASH_ECANCELED);
	ash_bus_server_close(w.srv);
	w.srv = NULL;
	reply_echo(w.held); /* the late reply of a closed server's frame */
	world_close(&w);
}

ASH_TEST(restarted_server_is_redialed)
{
	world               w;
	ash_bus_server_opts so = {NULL, 2, 1 << 20, "test"};

	world_open(&w, 2);
	so.url = url;
	wait_peer(&w);
	ash_bus_server_close(w.srv);
	for (int i = 0; i < 100 && ash_bus_client_peers(w.cli) > 0; i++)
		usleep(10000);
	ASH_T_EQ_INT(ash_bus_client_peers(w.cli), 0);
	ASH_T_OK(ash_bus_server_open(w.loop, &so, &w.srv));
	ash_bus_server_handle(w.srv, ASH_OP_SYS_ECHO, h_echo, &w);
	ASH_T_OK(ash_bus_server_start(w.srv));
	wait_peer(&w); /* within 2 s: reconnect backoff is capped there */
	ASH_T_OK(send_echo(&w, "back", 2000));
	run(&w, 1);
	ASH_T_EQ_INT(w.last.status, 200);
	world_close(&w);
}

/* --- pub/sub through the forwarder ------------------------------------- */

typedef struct evw {
	ash_loop *loop;
	int       got;
	char      service[32];
} evw;

static void
on_started(void *arg, const ash_event *ev)
{
	evw *e = arg;
	snprintf(e->service, sizeof(e->service), "%s",
	    ash_json_str(ev->body, "service"));
	e->got++;
	ash_loop_exit_when_idle(e->loop, 0);
}

static void
on_publish(evutil_socket_t fd, short what, void *arg)
{
	ash_bus_pub *p = arg;
	cJSON       *b = cJSON_CreateObject();

	/* A malformed event first: it must be dropped, not delivered. */
	cJSON_AddStringToObject(b, "service", "bad");
	ASH_T_OK(ash_bus_publish(p, ASH_TOPIC_SYS_STARTED, NULL, b));
	cJSON_AddStringToObject(b, "version", "1");
	cJSON_AddStringToObject(b, "instance", "h:1");
	cJSON_ReplaceItemInObject(b, "service", cJSON_CreateString("good"));
	ASH_T_OK(ash_bus_publish(p, ASH_TOPIC_SYS_STARTED, NULL, b));
	cJSON_Delete(b);
}

ASH_TEST(events_flow_through_the_forwarder)
{
	char               in[128], out[128];
	ash_bus_forwarder *f;
	ash_bus_pub       *p;
	ash_bus_sub       *s;
	evw                e = {0};

	snprintf(in, sizeof(in), "%s", fresh_url());
	snprintf(out, sizeof(out), "%s", fresh_url());
	ASH_T_OK(ash_loop_new(&e.loop));
	ASH_T_OK(ash_bus_forwarder_start(in, out, &f));
	ASH_T_OK(ash_bus_pub_open(in, false, &p));
	ASH_T_OK(ash_bus_sub_open(e.loop, out, false, 1 << 20, &s));
	ASH_T_OK(ash_bus_subscribe(s, ASH_TOPIC_SYS_STARTED, on_started, &e));
	/* Give the dials time to connect (pub/sub drops before that). */
	struct timeval tv = {0, 300000};
	event_base_once(
	    ash_loop_base(e.loop), -1, EV_TIMEOUT, on_publish, p, &tv);
	ash_loop_run(e.loop);
	ASH_T_EQ_INT(e.got, 1);
	ASH_T_EQ_STR(e.service, "good");
	ash_bus_sub_close(s);
	ash_bus_pub_close(p);
	ash_bus_forwarder_stop(f);
	ash_loop_free(e.loop);
}

/* One subscriber at a time on a listening publisher: each gets what is
 * published while it is connected, also after the first one left (the
 * publisher skips events only while nobody is connected). */
static void
publish_started(evutil_socket_t fd, short what, void *arg)
{
	ash_bus_pub *p = arg;
	cJSON       *b = cJSON_CreateObject();

	(void) fd;
	(void) what;
	cJSON_AddStringToObject(b, "service", "again");
	cJSON_AddStringToObject(b, "version", "1");
	cJSON_AddStringToObject(b, "instance", "h:1");
	ASH_T_OK(ash_bus_publish(p, ASH_TOPIC_SYS_STARTED, NULL, b));
	cJSON_Delete(b);
}

static void
give_up(evutil_socket_t fd, short what, void *arg)
{
	(void) fd;
	(void) what;
	ash_loop_exit_when_idle(arg, 0);
}

/* Subscribes on the loop, lets the dial connect (300 ms), publishes, and
 * runs until the event arrived or 3 s passed. */
static int
subscribe_and_publish(const char *u, ash_bus_pub *p)
{
	evw            e  = {0};
	ash_bus_sub   *s  = NULL;
	struct timeval tv = {0, 300000}, limit = {3, 0};

	ASH_T_OK(ash_loop_new(&e.loop));
	ASH_T_OK(ash_bus_sub_open(e.loop, u, false, 1 << 20, &s));
	ASH_T_OK(ash_bus_subscribe(s, ASH_TOPIC_SYS_STARTED, on_started, &e));
	event_base_once(
	    ash_loop_base(e.loop), -1, EV_TIMEOUT, publish_started, p, &tv);
	event_base_once(
	    ash_loop_base(e.loop), -1, EV_TIMEOUT, give_up, e.loop, &limit);
	ash_loop_run(e.loop);
	ash_bus_sub_close(s);
	ash_loop_free(e.loop);
	return e.got;
}

ASH_TEST(a_subscriber_after_one_that_left_gets_its_events)
{
	char         u[128];
	ash_bus_pub *p;
	cJSON       *b = cJSON_CreateObject();

	snprintf(u, sizeof(u), "%s", fresh_url());
	ASH_T_OK(ash_bus_pub_open(u, true, &p));
	/* Nobody connected: dropped, and still not an error. */
	ASH_T_OK(ash_bus_publish(p, ASH_TOPIC_SYS_STARTED, NULL, b));
	cJSON_Delete(b);
	ASH_T_EQ_INT(subscribe_and_publish(u, p), 1);
	usleep(200000); /* time for the first subscriber's pipe to go */
	ASH_T_EQ_INT(subscribe_and_publish(u, p), 1);
	ash_bus_pub_close(p);
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(request_reply_round_trip),
    ASH_TEST_ENTRY(concurrent_requests_beyond_slots_all_answered),
    ASH_TEST_ENTRY(unserved_op_is_404_with_reason),
    ASH_TEST_ENTRY(no_peer_fails_at_once),
    ASH_TEST_ENTRY(deadline_passes_then_late_reply_is_harmless),
    ASH_TEST_ENTRY(reply_breaking_the_contract_becomes_500),
    ASH_TEST_ENTRY(malformed_envelope_gets_400_and_late_one_is_dropped),
    ASH_TEST_ENTRY(drain_finishes_inflight_and_takes_nothing_new),
    ASH_TEST_ENTRY(server_gone_under_a_request_fails_it_at_once),
    ASH_TEST_ENTRY(client_close_cancels_outstanding_requests),
    ASH_TEST_ENTRY(coalesced_requests_share_one_frame_and_each_gets_its_reply),
    ASH_TEST_ENTRY(bus_metrics_count_each_status_of_an_op),
    ASH_TEST_ENTRY(lone_coalescing_request_goes_as_a_plain_envelope),
    ASH_TEST_ENTRY(
        coalesced_requests_wait_while_two_frames_are_out_then_go_as_one),
    ASH_TEST_ENTRY(
        coalesced_request_whose_deadline_passes_while_held_times_out),
    ASH_TEST_ENTRY(malformed_batch_frames_and_items_get_their_errors),
    ASH_TEST_ENTRY(an_attachment_reaches_its_handler_byte_for_byte),
    ASH_TEST_ENTRY(coalesced_attachments_each_reach_their_own_call),
    ASH_TEST_ENTRY(
        attachments_that_do_not_fill_the_bytes_after_the_json_are_refused),
    ASH_TEST_ENTRY(
        client_close_cancels_pending_and_carried_coalesced_requests),
    ASH_TEST_ENTRY(restarted_server_is_redialed),
    ASH_TEST_ENTRY(events_flow_through_the_forwarder),
    ASH_TEST_ENTRY(a_subscriber_after_one_that_left_gets_its_events))
