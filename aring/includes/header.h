/*
 * The shared control header: the first page(s) of the mapping, so that every
 * process mapping the ring sees the same cursors.  Offsets, never pointers:
 * another process maps the same bytes at another address.  Each line is
 * written by a different party, so each gets its own cache line.
 */
#ifndef ARING_HEADER_H
#define ARING_HEADER_H

#include <stdint.h>
#include <stddef.h>

#define ARING_LINE 64
#define ARING_MAGIC 0x31474e4952415f41ULL /* "A_ARING1" little-endian */
#define ARING_LAYOUT_VERSION 5u
#define ARING_MAX_READERS 64
#define ARING_MAX_PRODUCERS 16   /* RecordRing: processes producing at once */

/* header flags, changed with fetch_or */
#define ARING_FLAG_WRITER_CLOSED 1u
#define ARING_FLAG_WRITER_DIED 2u      /* set with WRITER_CLOSED: its process died first */
#define ARING_FLAG_READER_ATTACHED 4u
#define ARING_FLAG_RECORDS 8u             /* a RecordRing: the data is records (below) */
#define ARING_FLAG_RECORDS_CLOSING 16u    /* its writer closed: EOF once every claim is published */
#define ARING_FLAG_MULTI_PRODUCER 32u     /* a RecordRing whose writer many may use at once */
#define ARING_FLAG_PERSISTENT 64u         /* a ring file others attach to (FIFO notifiers beside it) */
#define ARING_FLAG_KNOWN 127u             /* every flag this layout defines */
#define ARING_NAME_MAX 64                 /* a named reader's name: up to 63 bytes, NUL padded */

/* reader slot states: the low 32 bits of a slot's word; the high 32 bits
 * count claims, so a slot freed and claimed again is never taken for the old
 * one (a stale end's close, a reaper that looked at the old holder). */
#define ARING_SLOT_FREE 0u
#define ARING_SLOT_CLAIMED 1u
#define ARING_SLOT_ACTIVE 2u
#define ARING_SLOT_PARKED 3u   /* a named reader with no holder: its position still holds the writer */

static inline uint32_t aring_slot_state(uint64_t word) { return (uint32_t)word; }
static inline uint32_t aring_slot_claims(uint64_t word) { return (uint32_t)(word >> 32); }
static inline uint64_t aring_slot_word(uint32_t state, uint32_t claims) {
    return ((uint64_t)claims << 32) | state;
}

typedef struct {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    uint64_t capacity;
    uint32_t page_size;
    uint32_t item_size;
    uint32_t max_readers;
    uint32_t strategy;
    uint32_t flags;        /* ARING_FLAG_* */
    uint32_t checksum;     /* aring_geometry_checksum: the fields above but flags, and created */
    uint64_t created;      /* creation time, ns since the epoch */
    char _pad[ARING_LINE - 56];
} aring_geometry;

/* Who holds an end: enough to tell, from another process, that it died.  The
 * start time tells a reused pid from the process that held the end.  `seq` is
 * odd while the record is being rewritten (reattach()): a reader of the record
 * takes it only if `seq` was even and unchanged around its reads. */
typedef struct {
    uint32_t pid;
    uint32_t seq;
    uint64_t start;        /* the process's start time (clock ticks since boot), 0 if unknown */
} aring_owner;

typedef struct { uint64_t value; char _pad[ARING_LINE - 8]; } aring_line_u64;

/* The write cursor's line, and what a RecordRing's publishers count there
 * (whoever moves the cursor over a record owns the line at that moment). */
typedef struct {
    uint64_t value;
    uint64_t records;      /* RecordRing: committed records published, ever */
    uint64_t dropped;      /* RecordRing: aborted or abandoned claims passed over, ever */
    char _pad[ARING_LINE - 24];
} aring_write_line;

/* A sleeper sets its flag and the position that would satisfy it; the other
 * side writes the fd only once its cursor reaches that position. */
typedef struct {
    uint32_t flag;
    uint32_t _pad0;
    uint64_t wake_at;      /* writer: min reader position wanted */
    char _pad[ARING_LINE - 16];
} aring_waiter;

typedef struct {
    uint64_t word;         /* aring_slot_word(ARING_SLOT_*, claims) */
    uint64_t position;     /* read position; only grows */
    uint64_t wake_at;      /* while sleeping: the write position wanted */
    aring_owner owner;
    uint64_t records;      /* RecordRing: records this reader consumed, ever */
    char _pad[ARING_LINE - 48];
    char name[ARING_NAME_MAX];   /* a named reader's name (its own line: written once per claim) */
} aring_slot;

typedef struct {
    aring_geometry geometry;          /* line 0: written once at creation */
    aring_write_line write_position;  /* line 1: the writer's cursor */
    aring_waiter writer_waiting;      /* line 2: writer sleeps for space */
    aring_line_u64 readers_waiting;   /* line 3: bit i = reader slot i sleeps for data */
    aring_line_u64 notifier_writes;   /* line 4: wakeups actually sent (stats) */
    aring_line_u64 dead_readers;      /* line 5: slots freed because their process died */
    aring_owner writer;               /* line 6: the writer end's process */
    uint64_t writer_word;             /* aring_slot_word(ARING_SLOT_*, claims): one writer across processes */
    char _pad6[ARING_LINE - sizeof(aring_owner) - 8];
    aring_line_u64 claim_position;    /* line 7: RecordRing: the end of the claimed records */
    aring_line_u64 registry_lock;     /* line 8: pid of the process naming a reader (rare) */
    /* lines 9-40: RecordRing: one slot per process holding the writer (state and
     * owner as a reader slot's; position unused), so a dead producer is noticed */
    aring_slot producers[ARING_MAX_PRODUCERS];
    aring_slot slots[];               /* lines 41..: two per reader slot */
} aring_header;

/* FNV-1a over the geometry a ring file is opened with: a file whose fixed
 * fields were changed (by hand, a bad disk, another program) is refused. */
static inline uint32_t aring_fnv1a(uint32_t h, const void *p, size_t n) {
    const unsigned char *b = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++) { h ^= b[i]; h *= 16777619u; }
    return h;
}

static inline uint32_t aring_geometry_checksum(const aring_geometry *g) {
    uint32_t h = aring_fnv1a(2166136261u, g, offsetof(aring_geometry, flags));
    return aring_fnv1a(h, &g->created, sizeof g->created);
}

/* Everything is read back as untrusted input: a reader's distance from the
 * write cursor must be within the capacity, and only slot bits below
 * max_readers may be set in readers_waiting. */
static inline uint64_t aring_slot_mask(uint32_t max_readers) {
    return max_readers >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << max_readers) - 1);
}

static inline size_t aring_header_bytes(size_t max_readers) {
    return sizeof(aring_header) + max_readers * sizeof(aring_slot);
}

/* A RecordRing's record: this header, then the payload, padded to a multiple
 * of 8 bytes.  Producers claim space by moving claim_position (CAS), write the
 * header (state CLAIMED; the position last, with release), fill the payload,
 * then set the state to COMMITTED or SKIPPED.  Whoever finishes a record moves
 * write_position over every finished record at its head, so readers (the byte
 * ring's readers, unchanged) only ever see finished records.  `position` tells
 * this lap's header from stale bytes of an earlier lap at the same offset, so
 * nothing needs zeroing and any number of readers may read.  A claim left
 * CLAIMED longer than a reader's claim_timeout is turned SKIPPED by that
 * reader (CAS), so one stuck producer cannot stall the ring; its commit then
 * fails (CAS CLAIMED -> COMMITTED).  A claimed state also holds its producer
 * slot (+1, bits 8..) so a reader drops the claims of a dead producer at once. */
#define ARING_RECORD_HEADER 16u
#define ARING_RECORD_CLAIMED 1u
#define ARING_RECORD_COMMITTED 2u
#define ARING_RECORD_SKIPPED 3u

typedef struct {
    uint64_t position;     /* the record's own position: valid only if it matches */
    uint32_t length;       /* payload bytes */
    uint32_t state;        /* ARING_RECORD_* */
} aring_record;

static inline uint64_t aring_record_size(uint64_t length) {
    return ARING_RECORD_HEADER + ((length + 7u) & ~(uint64_t)7u);
}

#endif /* ARING_HEADER_H */
