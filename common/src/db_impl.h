/*
 * db_impl.h - structs shared by db*.c only (never included from outside the
 * db module). Everything here is loop-thread-only unless a comment says
 * otherwise.
 */
#ifndef ASHOON_DB_IMPL_H
#define ASHOON_DB_IMPL_H

#include <ashoon/db.h>
#include <ashoon/log.h>

#include <event2/event.h>
#include <stdint.h>

#define ASH__DB_BACKOFF_MIN_MS 100   /* first reconnect delay */
#define ASH__DB_BACKOFF_MAX_MS 5000  /* reconnect delay cap */
#define ASH__DB_MAX_PARAMS     65535 /* protocol limit on $n */

typedef struct ash__db_conn ash__db_conn;
typedef struct ash__db_q    ash__db_q;
typedef struct ash__db_sub  ash__db_sub;

/* What a query is for; decides how its answer is delivered. */
enum ash__db_qkind {
	ASH__DB_Q_PLAIN,    /* ash_db_query: cb(arg, rv, res) */
	ASH__DB_Q_BEGIN,    /* BEGIN of a tx: answers txcb, pins the conn */
	ASH__DB_Q_TX,       /* ash_db_tx_query: cb(arg, rv, res) */
	ASH__DB_Q_COMMIT,   /* ends its tx; cb may be NULL */
	ASH__DB_Q_ROLLBACK, /* ends its tx; cb may be NULL */
	ASH__DB_Q_RESET,    /* internal ROLLBACK of a conn left in a tx */
	ASH__DB_Q_LISTEN,   /* internal LISTEN on the listen connection */
};

/* Where a query is. Exactly one place owns it at any time. */
enum ash__db_qwhere {
	ASH__DB_AT_NONE,  /* in hand: being sent, answered or freed */
	ASH__DB_AT_QUEUE, /* pool->queue, waiting for an idle connection */
	ASH__DB_AT_TX,    /* tx->pending, waiting for the pinned connection */
	ASH__DB_AT_DEFER, /* pool->deferred, answer (rv) known, not delivered
	                   */
	ASH__DB_AT_CONN,  /* sent: conn->q (maybe answered, being drained) */
};

typedef struct ash__db_qlist {
	ash__db_q *head;
	ash__db_q *tail;
	int        n;
} ash__db_qlist;

struct ash__db_q {
	ash__db_q          *prev; /* links in the list that owns it */
	ash__db_q          *next;
	enum ash__db_qkind  kind;
	enum ash__db_qwhere where;
	ash_db_pool        *pool;
	ash_db_tx          *tx;       /* BEGIN/TX/COMMIT/ROLLBACK: its tx */
	ash__db_conn       *conn;     /* AT_CONN: the connection */
	struct event       *deadline; /* NULL once answered or for internal */
	ash_db_cb           cb;       /* PLAIN/TX/COMMIT/ROLLBACK */
	ash_db_tx_cb        txcb;     /* BEGIN */
	void               *arg;
	bool                answered; /* the callback has run */
	ash_err             rv;       /* AT_DEFER: the answer to deliver */
	PGresult           *res;      /* result kept while draining */
	int                 n;        /* parameter count */
	const char         *sql;      /* points into the same allocation */
	const char *params[]; /* n values (NULL = SQL NULL), then text */
};

/* Connection states (PgBouncer sbuf style: one helper per state). */
enum ash__db_cstate {
	ASH__DB_C_RESOLVE,    /* waiting for the pool's host name lookup */
	ASH__DB_C_CONNECTING, /* PQconnectPoll in progress */
	ASH__DB_C_IDLE,       /* connected, no query; watching for EOF */
	ASH__DB_C_BUSY,       /* query sent; flushing and/or reading */
	ASH__DB_C_BACKOFF,    /* broken; reconnect timer armed */
	ASH__DB_C_CLOSED,     /* pool closing; nothing armed */
};

struct ash__db_conn {
	ash_db_pool        *pool;
	int                 id;       /* index for logs; -1 for the listener */
	bool                listener; /* the dedicated LISTEN connection */
	enum ash__db_cstate state;
	PGconn             *pg;         /* NULL unless CONNECTING/IDLE/BUSY */
	struct event       *ev;         /* the one socket event, or NULL */
	int                 ev_fd;      /* socket ev was made for */
	short               ev_what;    /* EV_READ/EV_WRITE ev was made for */
	struct event       *timer;      /* backoff, or connect timeout */
	bool                flushing;   /* PQflush returned 1: need EV_WRITE */
	int                 backoff_ms; /* next reconnect delay (pre-jitter) */
	ash__db_q          *q;          /* BUSY: the query on the wire */
	ash_db_tx          *tx;         /* pinned by this tx, or NULL */
	unsigned            session;    /* bumped whenever the session ends */
	int                 cancels;    /* PQcancel jobs aimed at session */
};

enum ash__db_txstate {
	ASH__DB_TX_BEGINNING, /* BEGIN queued or on the wire */
	ASH__DB_TX_OPEN,      /* BEGIN done, caller owns it */
	ASH__DB_TX_BROKEN,    /* its connection died; only the end is left */
	ASH__DB_TX_ENDING,    /* COMMIT/ROLLBACK requested */
	ASH__DB_TX_DEAD,      /* being freed */
};

struct ash_db_tx {
	ash_db_tx           *prev; /* pool->txs */
	ash_db_tx           *next;
	ash_db_pool         *pool;
	ash__db_conn        *conn; /* pinned connection once BEGIN is sent */
	enum ash__db_txstate state;
	ash__db_qlist        pending; /* tx queries waiting for conn */
};

/* One ash_db_listen subscription. */
struct ash__db_sub {
	ash__db_sub     *next;
	char            *channel; /* as given */
	char            *sql;     /* LISTEN "quoted" */
	ash_db_notify_cb cb;
	void            *arg;
	bool             issued; /* LISTEN sent on the current connection */
};

struct ash_db_pool {
	ash_loop          *loop;
	ash_work_pool     *work; /* PQcancel, getaddrinfo; may be NULL */
	struct event_base *base;
	char              *dsn;     /* conninfo as given (secret) */
	char              *options; /* DSN options + search_path + timeout */
	char              *host;    /* DSN host list when it needs a lookup */
	char              *port;    /* DSN port list (may be NULL) */
	char              *r_host;  /* after the lookup: host list ... */
	char              *r_addr;  /* ... matching hostaddr list ... */
	char              *r_port;  /* ... and port list (NULL: DSN's) */
	bool               need_resolve; /* host has names, no lookup done */
	bool               resolving;    /* a lookup job is in flight */
	int                query_timeout_ms;
	int                connect_timeout_ms; /* <= 0: none */
	int                max_queue;
	int                size;
	ash__db_conn     **conns;    /* size query connections */
	ash__db_conn      *listener; /* NULL until ash_db_listen */
	ash__db_qlist      queue;    /* plain queries and BEGINs, FIFO */
	ash__db_qlist      deferred; /* answers to deliver from the kick */
	ash_db_tx         *txs;      /* every live tx */
	ash__db_sub       *subs;     /* LISTEN subscriptions, in order */
	struct event      *kick;     /* deferred answers + dispatch */
	uint64_t           rng;      /* xorshift state for jitter */
	int                refs;     /* owner + running callbacks + jobs */
	bool               closing;
};

/* db.c: pool references (STYLE §7) - freed when the last one goes. */
void ash__db_pool_hold(ash_db_pool *pool);
void ash__db_pool_rele(ash_db_pool *pool);

/* db.c: dispatch soon from a fresh loop callback (never re-entrant). */
void ash__db_kick(ash_db_pool *pool);
/* db.c: connections up or on their way up (not in backoff). */
int ash__db_live(const ash_db_pool *pool);
/* db.c: answers every queued query with rv (nothing is up). */
void ash__db_fail_queue(ash_db_pool *pool, ash_err rv);
/* db.c: a random number in [0, n). */
int ash__db_rand(ash_db_pool *pool, int n);

/* db.c: queries. new copies sql and params; arm starts the deadline. */
ash__db_q *ash__db_q_new(ash_db_pool *pool, enum ash__db_qkind kind,
    const char *sql, int n, const char *const *params);
void       ash__db_q_arm(ash__db_q *q);
void       ash__db_q_free(ash__db_q *q);
/* Runs the query's callback once (by kind); later calls do nothing. The
 * caller must check pool->closing afterwards. */
void ash__db_q_answer(ash__db_q *q, ash_err rv, const PGresult *res);
/* Checks arguments and capacity for a new query or BEGIN. */
ash_err ash__db_admit(ash_db_pool *pool, const char *sql, int n,
    const char *const *params) ASH_MUSTCHECK;

void       ash__db_qlist_push(ash__db_qlist *l, ash__db_q *q);
ash__db_q *ash__db_qlist_pop(ash__db_qlist *l);
void       ash__db_qlist_remove(ash__db_qlist *l, ash__db_q *q);

/* db.c: result -> ash_err, logging (DB-ERROR, never parameters). */
ash_err ash__db_map(const PGconn *pg, const PGresult *res);
void    ash__db_log_result(const ash__db_conn *c, const PGresult *res);

/* db_conn.c: the connection state machine. */
ash__db_conn *ash__db_conn_new(ash_db_pool *pool, int id, bool listener);
void          ash__db_conn_free(ash__db_conn *c);
void          ash__db_conn_start(ash__db_conn *c);
void          ash__db_conn_start_soon(ash__db_conn *c);
void          ash__db_conn_resolved(ash__db_conn *c, bool ok);
void          ash__db_conn_next(ash__db_conn *c);
void          ash__db_conn_cancel(ash__db_conn *c);
ash__db_q    *ash__db_conn_close(ash__db_conn *c);

/* db_dsn.c: conninfo handling and the one-time host lookup. */
ash_err ash__db_dsn_init(ash_db_pool *pool, const ash_db_opts *opts);
void    ash__db_dsn_fini(ash_db_pool *pool);
int     ash__db_dsn_params(
        const ash_db_pool *pool, const char **keys, const char **vals);
void ash__db_resolve(ash_db_pool *pool);

/* db_tx.c */
void ash__db_tx_end(ash_db_tx *tx);
void ash__db_tx_broken(ash_db_tx *tx);
void ash__db_tx_fail_pending(ash_db_tx *tx);

/* db_listen.c */
ash__db_q *ash__db_listen_next(ash_db_pool *pool);
void       ash__db_listen_reset(ash_db_pool *pool);
bool       ash__db_notify(ash__db_conn *c);
void       ash__db_listen_free(ash_db_pool *pool);

#endif
