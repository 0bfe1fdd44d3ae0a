-- Figures by lane for the operator's commands, backfill stats and backfill queues (backfill/lanes/figures.py).

-- name: lane_stats
-- Every lane that has jobs, with its jobs by state (one column per state, in figures.STATES order).
select lane,
       count(*) filter (where state = 'waiting')::int as waiting,
       count(*) filter (where state = 'scheduled')::int as scheduled,
       count(*) filter (where state = 'running')::int as running,
       count(*) filter (where state = 'retrying')::int as retrying,
       count(*) filter (where state = 'failed')::int as failed
  from (select @part:lane_of_job@ as lane, @part:job_state@ as state
          from @schema@._private_jobs as j) as jobs
 group by lane
 order by lane

-- name: queue_lanes
-- The lanes of the jobs in each named queue that has jobs (a queue may hold several lanes' jobs).
select q.queue_name, array_agg(distinct @part:lane_of_job@ order by @part:lane_of_job@) as lanes
  from @schema@._private_jobs as j
  join @schema@._private_job_queues as q on q.id = j.job_queue_id
 group by q.queue_name
