-- A job's lane, as SQL (backfill/lanes/lane.py): included by the statements that count jobs by lane.

-- part: lane_of_job
-- lane_of (lane.py) over the job row aliased j: a custom-lane job carries the bare lane flag and the named one,
-- whose suffix is its lane; any other job is Fast with a negative priority, else Bulk.
coalesce(
  case when jsonb_typeof(j.flags) = 'object' and j.flags ? @lane_flag@ then (
    select min(substr(flag, @lane_name_start@))
      from jsonb_object_keys(j.flags) as flag
     where starts_with(flag, @lane_flag_prefix@)
  ) end,
  case when j.priority < 0 then @fast_lane@ else @bulk_lane@ end
)
