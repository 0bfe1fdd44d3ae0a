-- Requeue and delete many dead-letter entries a batch at a time (backfill/dlq/batches.py): the count, and the
-- walk by ascending id. Each statement takes the filter as $1..$7 (the entry_filter part of entries.sql) and
-- $8, true to take only dead entries (what a requeue takes).

-- part: batch_page
-- $9 the last id already looked at (0 at first), $10 the batch size.
where @part:entry_filter@
  and (not $8::boolean or d.state = 'dead')
  and d.id > $9::bigint
order by d.id
limit $10::int

-- name: count
select count(*)
  from @schema@.backfill_dlq as d
 where @part:entry_filter@
   and (not $8::boolean or d.state = 'dead')

-- name: page
select d.id from @schema@.backfill_dlq as d @part:batch_page@

-- name: delete_page
-- Chosen and deleted in one statement: an entry that stopped matching cannot be deleted by mistake.
delete from @schema@.backfill_dlq as gone
 where gone.id in (select d.id from @schema@.backfill_dlq as d @part:batch_page@ for update)
returning gone.id
