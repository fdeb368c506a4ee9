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
#define ARING_LAYOUT_VERSION 1u
#define ARING_MAX_READERS 64

/* header flags, changed with fetch_or */
#define ARING_FLAG_WRITER_CLOSED 1u
#define ARING_FLAG_READER_ATTACHED 4u

/* reader slot states */
#define ARING_SLOT_FREE 0u
#define ARING_SLOT_CLAIMED 1u
#define ARING_SLOT_ACTIVE 2u

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
    uint32_t writer_pid;
    char _pad[ARING_LINE - 48];
} aring_geometry;

typedef struct { uint64_t value; char _pad[ARING_LINE - 8]; } aring_line_u64;

/* A sleeper sets its flag and the position that would satisfy it; the other
 * side writes the fd only once its cursor reaches that position. */
typedef struct {
    uint32_t flag;
    uint32_t _pad0;
    uint64_t wake_at;      /* writer: min reader position wanted */
    char _pad[ARING_LINE - 16];
} aring_waiter;

typedef struct {
    uint32_t state;        /* ARING_SLOT_* */
    uint32_t pid;
    uint64_t position;     /* read position; only grows */
    uint64_t wake_at;      /* while sleeping: the write position wanted */
    char _pad[ARING_LINE - 24];
} aring_slot;

typedef struct {
    aring_geometry geometry;          /* line 0: written once at creation */
    aring_line_u64 write_position;    /* line 1: the writer's cursor */
    aring_waiter writer_waiting;      /* line 2: writer sleeps for space */
    aring_line_u64 readers_waiting;   /* line 3: bit i = reader slot i sleeps for data */
    aring_line_u64 notifier_writes;   /* line 4: wakeups actually sent (stats) */
    aring_slot slots[];               /* lines 5..: one per reader slot */
} aring_header;

static inline size_t aring_header_bytes(size_t max_readers) {
    return sizeof(aring_header) + max_readers * sizeof(aring_slot);
}

#endif /* ARING_HEADER_H */
